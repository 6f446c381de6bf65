/* hold MIB NODE 4k|thp: MIB MiB of anonymous memory allocated on NODE (preferred
 * policy), every page written; prints {"pid","start","end"} and waits on stdin:
 * "sum" answers a checksum of the first word of each page, "exit"/EOF ends. */
#include "common.h"

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: hold MIB NODE 4k|thp\n");
        return 2;
    }
    size_t size = strtoul(argv[1], NULL, 10) * MIB;
    int node = atoi(argv[2]);
    int thp = strcmp(argv[3], "thp") == 0;
    if (sys_set_mempolicy(MPOL_PREFERRED, node) != 0) {
        perror("set_mempolicy");
        return 1;
    }
    char *p = map_aligned(size, thp);
    memset(p, 0x5a, size);
    for (size_t off = 0; off < size; off += 4096)
        *(uint64_t *)(p + off) = off * 2654435761UL;
    printf("{\"pid\": %d, \"start\": %lu, \"end\": %lu}\n", getpid(), (unsigned long)p,
           (unsigned long)(p + size));
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "sum", 3) == 0) {
            uint64_t sum = 0, bad = 0;
            for (size_t off = 0; off < size; off += 4096) {
                uint64_t v = *(uint64_t *)(p + off);
                sum += v;
                bad += v != off * 2654435761UL;
            }
            printf("{\"sum\": %lu, \"bad_pages\": %lu}\n", (unsigned long)sum, (unsigned long)bad);
            fflush(stdout);
        } else if (strncmp(line, "exit", 4) == 0) {
            break;
        }
    }
    return 0;
}
