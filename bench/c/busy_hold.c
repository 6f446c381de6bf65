/* busy_hold MIB interleave|keep: MIB MiB of anonymous 4K memory, then a CPU-busy
 * loop writing one word of every page, until killed (SIGTERM).
 *   interleave: allocated interleaved over nodes 0 and 1, then the policy is reset
 *               to the default, so half the pages are on the "wrong" node whichever
 *               node a daemon picks, and nothing stops a daemon from moving them;
 *   keep:       allocated under whatever policy the caller set (numactl --membind).
 * Prints {"pid","start","end"} once every page is written. */
#include "common.h"

#define MPOL_DEFAULT 0
#define MPOL_INTERLEAVE 3

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: busy_hold MIB interleave|keep\n");
        return 2;
    }
    size_t size = strtoul(argv[1], NULL, 10) * MIB;
    int interleave = strcmp(argv[2], "interleave") == 0;
    if (interleave) {
        unsigned long mask[16] = {3};
        if (syscall(SYS_set_mempolicy, MPOL_INTERLEAVE, mask, 16 * 64 + 1) != 0) {
            perror("set_mempolicy");
            return 1;
        }
    }
    char *p = map_aligned(size, 0);
    memset(p, 0x5a, size);
    if (interleave && syscall(SYS_set_mempolicy, MPOL_DEFAULT, NULL, 0) != 0) {
        perror("set_mempolicy default");
        return 1;
    }
    printf("{\"pid\": %d, \"start\": %lu, \"end\": %lu}\n", getpid(), (unsigned long)p,
           (unsigned long)(p + size));
    fflush(stdout);
    for (uint64_t round = 1;; round++)
        for (size_t off = 0; off < size; off += 4096)
            *(volatile uint64_t *)(p + off) = round + off;
}
