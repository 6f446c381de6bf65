/* move_pages_bench PID START END NODE BATCH move|qmq
 *
 * The move_pages calls numad-py makes for a range, from C, on another process:
 *   move: one move_pages(MPOL_MF_MOVE) per BATCH pages, every page sent;
 *   qmq:  what numad-py's nd_migrate_segments does per chunk (query where each
 *         page is, move only those not on NODE, query again).
 * Prints JSON: seconds (whole loop), calls, longest_ns, pages, on_target. */
#include "common.h"

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: move_pages_bench PID START END NODE BATCH move|qmq\n");
        return 2;
    }
    int pid = atoi(argv[1]);
    unsigned long start = strtoul(argv[2], NULL, 0), end = strtoul(argv[3], NULL, 0);
    int node = atoi(argv[4]);
    unsigned long batch = strtoul(argv[5], NULL, 10);
    int qmq = strcmp(argv[6], "qmq") == 0;
    unsigned long npages = (end - start) / 4096;
    void **pages = malloc(batch * sizeof(void *));
    int *nodes = malloc(batch * sizeof(int));
    int *status = malloc(batch * sizeof(int));
    for (unsigned long i = 0; i < batch; i++)
        nodes[i] = node;
    long calls = 0, on_target = 0;
    int64_t longest = 0;
    int64_t t0 = now_ns();
    for (unsigned long done = 0; done < npages;) {
        unsigned long count = npages - done < batch ? npages - done : batch;
        for (unsigned long i = 0; i < count; i++)
            pages[i] = (void *)(start + (done + i) * 4096);
        unsigned long n = count;
        if (qmq) {
            if (sys_move_pages(pid, count, pages, NULL, status, 0) < 0) {
                perror("move_pages query");
                return 1;
            }
            n = 0;
            for (unsigned long i = 0; i < count; i++)
                if (status[i] >= 0 && status[i] != node)
                    pages[n++] = pages[i];
        }
        if (n) {
            int64_t c0 = now_ns();
            long rc = sys_move_pages(pid, n, pages, nodes, status, MPOL_MF_MOVE);
            int64_t dt = now_ns() - c0;
            calls++;
            if (dt > longest)
                longest = dt;
            if (rc < 0) {
                perror("move_pages");
                return 1;
            }
            if (qmq && sys_move_pages(pid, n, pages, NULL, status, 0) < 0) {
                perror("move_pages query");
                return 1;
            }
            for (unsigned long i = 0; i < n; i++)
                on_target += status[i] == node;
        }
        done += count;
    }
    int64_t total = now_ns() - t0;
    printf("{\"seconds\": %.9f, \"calls\": %ld, \"longest_ns\": %ld, \"pages\": %lu, \"on_target\": %ld}\n",
           total / 1e9, calls, (long)longest, npages, on_target);
    return 0;
}
