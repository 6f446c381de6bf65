/* Shared helpers for the bench programs: raw NUMA syscalls (no libnuma), a clock. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define MIB (1UL << 20)
#define HUGE (2UL << 20)
#define MPOL_PREFERRED 1
#define MPOL_BIND 2
#define MPOL_MF_MOVE (1 << 1)

static inline int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static inline long sys_set_mempolicy(int mode, int node)
{
    unsigned long mask[16] = {0};
    mask[node / 64] |= 1UL << (node % 64);
    return syscall(SYS_set_mempolicy, mode, mask, 16 * 64 + 1);
}

static inline long sys_move_pages(int pid, unsigned long n, void **pages, const int *nodes,
                                  int *status, int flags)
{
    return syscall(SYS_move_pages, pid, n, pages, nodes, status, flags);
}

/* size bytes of private anonymous memory, 2 MiB aligned, THP on or off. */
static inline char *map_aligned(size_t size, int thp)
{
    char *raw = mmap(NULL, size + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    char *p = (char *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
    if (madvise(p, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0)
        perror("madvise");
    return p;
}
#endif
