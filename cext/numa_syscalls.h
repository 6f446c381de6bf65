/* The whole C surface of numad_py._numa: raw syscall wrappers and helpers.
 *
 * Every wrapper returns the syscall's result and leaves errno alone, so the
 * Python side reads ffi.errno once, right after the call.  Raw syscalls, not
 * libnuma's wrappers, so no library prints to stderr behind our back. */
#ifndef NUMAD_NUMA_SYSCALLS_H
#define NUMAD_NUMA_SYSCALLS_H

#include <stdint.h>

#define ND_MAX_ERRNO 134  /* errno values on Linux stay below this */

long nd_move_pages(int pid, unsigned long count, void **pages,
                   const int *nodes, int *status, int flags);
long nd_migrate_pages(int pid, unsigned long maxnode,
                      const unsigned long *old_nodes,
                      const unsigned long *new_nodes);
long nd_mbind(void *addr, unsigned long len, int mode,
              const unsigned long *nodemask, unsigned long maxnode,
              unsigned int flags);
long nd_set_mempolicy(int mode, const unsigned long *nodemask,
                      unsigned long maxnode);
long nd_get_mempolicy(int *mode, unsigned long *nodemask,
                      unsigned long maxnode, void *addr, unsigned long flags);
long nd_set_mempolicy_home_node(unsigned long start, unsigned long len,
                                unsigned long home_node, unsigned long flags);

/* Outcome of one chunk of a range migration, tallied in C so a batch of
 * 65,536 pages never becomes 65,536 Python objects. */
struct nd_chunk_result {
    long moved;          /* was off target, is on target now            */
    long already;        /* was on a target node before the call         */
    long not_present;    /* never faulted in / no page (-ENOENT)         */
    long failed;         /* still off target after the call              */
    long err_counts[134]; /* failed pages by errno; 134 = ND_MAX_ERRNO  */
    long other_node;     /* failed without an errno: still on another node */
    long move_calls;     /* move_pages calls made (0 when nothing to do) */
    int64_t longest_ns;  /* longest single move_pages call               */
    int64_t total_ns;    /* time spent inside move_pages                 */
    int call_errno;      /* errno of a whole-call failure, else 0        */
};

/* One chunk of a range migration over `nsegs` runs of pages (`counts[s]`
 * pages from `starts[s]`; one call may cover many small mappings).  Query
 * where each page lives, move the ones off target, query again the ones the
 * kernel did not report on a target.  `targets` (ntargets >= 1) receive
 * pages round-robin.  `blind`: numa_maps showed no page of these runs on a
 * target, so the query before the move is skipped (one page walk less per
 * page); every page the kernel leaves on a target was moved by this call,
 * and pages absent before and after count as not present.
 * `pages`, `nodes`, `status`, `after` are caller-owned scratch arrays of at
 * least the total of `counts` entries.
 * Returns 0, or -1 with res->call_errno set when the call itself failed. */
int nd_migrate_segments(int pid, const uintptr_t *starts, const unsigned long *counts, int nsegs,
                        unsigned long page_size, const int *targets, int ntargets, int flags,
                        int blind, void **pages, int *nodes, int *status, int *after,
                        struct nd_chunk_result *res);

/* Like nd_migrate_segments, but every page has ONE right node: page i of run
 * s (index first_indexes[s] + i in its range's round-robin) belongs on
 * pattern[((first_indexes[s] + i) / units[s]) % npattern], the weighted
 * round-robin; a page on another node of the pattern is moved too.
 * units[s] > 1 keeps a transparent huge page on one node.  One call covers
 * all the runs, as for nd_migrate_segments. */
int nd_place_segments(int pid, const uintptr_t *starts, const unsigned long *counts,
                      const unsigned long *first_indexes, const unsigned long *units, int nsegs,
                      unsigned long page_size, const int *pattern, int npattern, int flags,
                      void **pages, int *nodes, int *status, int *after,
                      struct nd_chunk_result *res);

/* Count pages of [start, start + count*page_size) per node (query only).
 * node_pages has max_nodes entries; errors are counted per errno. */
int nd_query_range(int pid, uintptr_t start, unsigned long count,
                   unsigned long page_size, void **pages, int *status,
                   long *node_pages, int max_nodes, long *err_counts,
                   int max_err, int *call_errno);

/* Move pages of a caller-given address list to one node each; status
 * tallied per node / errno.  For the generic Python API (own lists). */
void nd_tally_status(const int *status, unsigned long count, long *node_pages,
                     int max_nodes, long *err_counts, int max_err);

#endif
