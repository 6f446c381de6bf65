#define _GNU_SOURCE
#include "numa_syscalls.h"

#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Kernel headers older than the running kernel may lack these numbers. */
#ifndef SYS_set_mempolicy_home_node
#  if defined(__x86_64__) || defined(__aarch64__)
#    define SYS_set_mempolicy_home_node 450
#  endif
#endif

long nd_move_pages(int pid, unsigned long count, void **pages,
                   const int *nodes, int *status, int flags)
{
    return syscall(SYS_move_pages, pid, count, pages, nodes, status, flags);
}

long nd_migrate_pages(int pid, unsigned long maxnode,
                      const unsigned long *old_nodes,
                      const unsigned long *new_nodes)
{
    return syscall(SYS_migrate_pages, pid, maxnode, old_nodes, new_nodes);
}

long nd_mbind(void *addr, unsigned long len, int mode,
              const unsigned long *nodemask, unsigned long maxnode,
              unsigned int flags)
{
    return syscall(SYS_mbind, addr, len, mode, nodemask, maxnode, flags);
}

long nd_set_mempolicy(int mode, const unsigned long *nodemask,
                      unsigned long maxnode)
{
    return syscall(SYS_set_mempolicy, mode, nodemask, maxnode);
}

long nd_get_mempolicy(int *mode, unsigned long *nodemask,
                      unsigned long maxnode, void *addr, unsigned long flags)
{
    return syscall(SYS_get_mempolicy, mode, nodemask, maxnode, addr, flags);
}

long nd_set_mempolicy_home_node(unsigned long start, unsigned long len,
                                unsigned long home_node, unsigned long flags)
{
#ifdef SYS_set_mempolicy_home_node
    return syscall(SYS_set_mempolicy_home_node, start, len, home_node, flags);
#else
    errno = ENOSYS;
    return -1;
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int is_target(int node, const int *targets, int ntargets)
{
    for (int i = 0; i < ntargets; i++)
        if (targets[i] == node)
            return 1;
    return 0;
}

static void fill_pages(void **pages, uintptr_t start, unsigned long count,
                       unsigned long page_size)
{
    for (unsigned long i = 0; i < count; i++)
        pages[i] = (void *)(start + i * page_size);
}

void nd_tally_status(const int *status, unsigned long count, long *node_pages,
                     int max_nodes, long *err_counts, int max_err)
{
    for (unsigned long i = 0; i < count; i++) {
        int s = status[i];
        if (s >= 0 && s < max_nodes)
            node_pages[s]++;
        else if (s < 0 && -s < max_err)
            err_counts[-s]++;
    }
}

int nd_query_range(int pid, uintptr_t start, unsigned long count,
                   unsigned long page_size, void **pages, int *status,
                   long *node_pages, int max_nodes, long *err_counts,
                   int max_err, int *call_errno)
{
    fill_pages(pages, start, count, page_size);
    if (nd_move_pages(pid, count, pages, NULL, status, 0) < 0) {
        *call_errno = errno;
        return -1;
    }
    nd_tally_status(status, count, node_pages, max_nodes, err_counts, max_err);
    return 0;
}

/* Sentinel for "the kernel did not report this page": move_pages stops
 * storing status after the first batch that returns a positive count. */
#define ND_UNREPORTED (-100000)

/* No page behind the address: ENOENT (no page for the entry), EFAULT (no
 * page table at all, or the shared zero page). */
static int absent(int s)
{
    return s == -ENOENT || s == -EFAULT;
}

/* Where page i belongs: any of `targets`, or (targets == NULL, as
 * nd_place_segments passes) exactly nodes[i], its own node. */
static int placed(int s, unsigned long i, const int *targets, int ntargets, const int *nodes)
{
    if (s < 0)
        return 0;
    return targets ? is_target(s, targets, ntargets) : s == nodes[i];
}

/* Steps 2 and 3 of a chunk: move the `n` listed pages, then look again
 * only at those the kernel did not report where they belong.  `blind`: no
 * query came first (a blind nd_migrate_segments), so a page that is absent
 * before and after the move is "not present", as the query would have said. */
static int move_and_settle(int pid, unsigned long n, const int *targets,
                           int ntargets, int flags, int blind, void **pages,
                           int *nodes, int *status, int *after,
                           struct nd_chunk_result *res)
{
    /* 2. Move them.  This is the only call that stalls the target. */
    for (unsigned long i = 0; i < n; i++)
        status[i] = ND_UNREPORTED;
    int64_t t0 = now_ns();
    long rc = nd_move_pages(pid, n, pages, nodes, status, flags);
    int saved = errno;
    int64_t dt = now_ns() - t0;
    res->move_calls++;
    res->total_ns += dt;
    if (dt > res->longest_ns)
        res->longest_ns = dt;
    if (rc < 0) {
        res->call_errno = saved;
        return -1;
    }

    /* 3. Pages the kernel reported on a target node are done.  Look again
     *    only at the others: an error status, or no status at all (a
     *    positive return leaves later slots unwritten). */
    unsigned long unsure = 0;
    for (unsigned long i = 0; i < n; i++) {
        if (placed(status[i], i, targets, ntargets, nodes)) {
            res->moved++;
        } else {
            pages[unsure] = pages[i];
            status[unsure] = status[i];
            nodes[unsure] = nodes[i];
            unsure++;
        }
    }
    if (unsure == 0)
        return 0;
    if (nd_move_pages(pid, unsure, pages, NULL, after, 0) < 0) {
        res->call_errno = errno;
        return -1;
    }
    for (unsigned long i = 0; i < unsure; i++) {
        int a = after[i];
        int s = status[i];
        if (placed(a, i, targets, ntargets, nodes)) {
            res->moved++;                   /* moved along with its THP */
            continue;
        }
        if (blind && absent(a) && (absent(s) || s == ND_UNREPORTED)) {
            res->not_present++;             /* no page, before or after */
            continue;
        }
        res->failed++;
        if (s < 0 && s != ND_UNREPORTED && -s < ND_MAX_ERRNO)
            res->err_counts[-s]++;          /* the kernel said why     */
        else if (a < 0 && -a < ND_MAX_ERRNO)
            res->err_counts[-a]++;          /* unmapped since the query */
        else
            res->other_node++;              /* no reason given: busy    */
    }
    return 0;
}

/* Step 1 of a chunk: where is each page now?  nodes[i] holds where page i
 * should go.  Pages already placed (see placed()) and pages that do not
 * exist are settled here and never handed to the kernel; the rest are
 * compacted to the front with their nodes.  Returns how many remain, or -1. */
static long query_and_settle(int pid, unsigned long count, const int *targets, int ntargets,
                             void **pages, int *nodes, int *status, struct nd_chunk_result *res)
{
    if (nd_move_pages(pid, count, pages, NULL, status, 0) < 0) {
        res->call_errno = errno;
        return -1;
    }
    unsigned long n = 0;
    for (unsigned long i = 0; i < count; i++) {
        int s = status[i];
        if (placed(s, i, targets, ntargets, nodes)) {
            res->already++;
        } else if (absent(s)) {
            /* Nothing to move.  ENOENT: no page behind a page table entry;
             * EFAULT: no page table at all (FOLL_DUMP on a never-touched
             * anonymous area) or the shared zero page. */
            res->not_present++;
        } else if (s < 0) {
            res->failed++;
            if (-s < ND_MAX_ERRNO)
                res->err_counts[-s]++;
        } else {
            pages[n] = pages[i];
            nodes[n] = nodes[i];
            n++;
        }
    }
    return (long)n;
}

/* The pages of `nsegs` runs (`counts[s]` pages from `starts[s]`) and, for
 * each, the target it goes to: round-robin over the targets by the page's
 * index in the address space, so a run is spread the same whichever chunk
 * holds it.  Returns the pages filled. */
static unsigned long fill_segments(void **pages, int *nodes, const uintptr_t *starts,
                                   const unsigned long *counts, int nsegs, unsigned long page_size,
                                   const int *targets, int ntargets)
{
    unsigned long n = 0;
    for (int s = 0; s < nsegs; s++) {
        unsigned long index = starts[s] / page_size;
        for (unsigned long i = 0; i < counts[s]; i++, n++) {
            pages[n] = (void *)(starts[s] + i * page_size);
            nodes[n] = targets[(index + i) % (unsigned long)ntargets];
        }
    }
    return n;
}

int nd_migrate_segments(int pid, const uintptr_t *starts, const unsigned long *counts, int nsegs,
                        unsigned long page_size, const int *targets, int ntargets, int flags,
                        int blind, void **pages, int *nodes, int *status, int *after,
                        struct nd_chunk_result *res)
{
    unsigned long count = fill_segments(pages, nodes, starts, counts, nsegs, page_size,
                                        targets, ntargets);
    if (blind)
        return move_and_settle(pid, count, targets, ntargets, flags, 1, pages, nodes,
                               status, after, res);
    long n = query_and_settle(pid, count, targets, ntargets, pages, nodes, status, res);
    if (n <= 0)
        return (int)n;
    return move_and_settle(pid, (unsigned long)n, targets, ntargets, flags, 0, pages, nodes,
                           status, after, res);
}

int nd_place_segments(int pid, const uintptr_t *starts, const unsigned long *counts,
                      const unsigned long *first_indexes, const unsigned long *units, int nsegs,
                      unsigned long page_size, const int *pattern, int npattern, int flags,
                      void **pages, int *nodes, int *status, int *after,
                      struct nd_chunk_result *res)
{
    unsigned long n = 0;
    for (int s = 0; s < nsegs; s++) {
        unsigned long unit = units[s] ? units[s] : 1;
        for (unsigned long i = 0; i < counts[s]; i++, n++) {     /* page i's own node */
            pages[n] = (void *)(starts[s] + i * page_size);
            nodes[n] = pattern[((first_indexes[s] + i) / unit) % (unsigned long)npattern];
        }
    }
    long left = query_and_settle(pid, n, NULL, 0, pages, nodes, status, res);
    if (left <= 0)
        return (int)left;
    return move_and_settle(pid, (unsigned long)left, NULL, 0, flags, 0, pages, nodes, status, after,
                           res);
}
