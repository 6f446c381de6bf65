/*
 * numad-py fork-time placement shim (LD_PRELOAD).
 *
 * Sets the memory policy a child will allocate with BEFORE the child
 * exists, so copy-on-write copies, the child's page tables and its fresh
 * allocations land on the child's node instead of the parent's.
 *
 * Interposed: fork, _Fork, vfork, posix_spawn, posix_spawnp, system, popen,
 * and the exec family (only to keep the shim out of what the root's
 * children exec).
 * CPython 3.11: os.fork -> fork(); subprocess -> _posixsubprocess -> vfork()
 * (fork() when preexec_fn etc. rule vfork out) or os.posix_spawn ->
 * posix_spawn().  os.system -> system().
 *
 * Configuration: environment variables read ONCE, in the constructor:
 *   NUMAD_SHIM_STRATEGY   fixed | spread | least-loaded   (unset: shim dormant)
 *   NUMAD_SHIM_NODES      node list "1", "1-3", "0,2"     (fixed: exactly one)
 *   NUMAD_SHIM_MODE       preferred (default) | bind | interleave | preferred-many
 *                         | weighted-interleave (weights: the machine's table)
 *   NUMAD_SHIM_BALANCING  1: children's policy gets MPOL_F_NUMA_BALANCING
 *   NUMAD_SHIM_HOME_NODE  N: each anonymous mmap() gets the task's bind /
 *                         preferred-many policy with home node N (home.c);
 *                         works without a strategy too
 *   NUMAD_SHIM_CPUS       1: pin each child to its node's CPUs
 *   NUMAD_SHIM_ROOT       pid: only this process places its children; every
 *                         other process loading the shim (descendants after
 *                         exec, children after fork) passes through - they
 *                         already inherit their node from the kernel.  The
 *                         root's fork()ed children drop the shim from their
 *                         LD_PRELOAD when they exec (see "exec" below).
 *                         Unset/empty: every process under the shim places.
 *   NUMAD_SHIM_TABLE      node table path (default /run/numad-py/node-table)
 *   NUMAD_SHIM_CHILD_BYTES least-loaded: bytes debited locally from a node per
 *                         child placed on it until the next table generation
 *                         (default 64 MiB; spreads bursts between scans)
 *   NUMAD_SHIM_STATS      optional counters file shared by the process tree
 *   NUMAD_SHIM_SYSFS      sysfs root for node cpulists (default /sys)
 *   NUMAD_SHIM_DISABLE    1: dormant
 *   NUMAD_SHIM_RULES      rules file (default /run/numad-py/shim-rules), read
 *                         only when NUMAD_SHIM_STRATEGY is unset: the daemon's
 *                         policy names the programs (comm / exe glob, uid)
 *                         whose children are placed, and how.  First matching
 *                         line wins; no file or no match: dormant.  Format in
 *                         numad_shim.h and docs/shim.md.  Globs are matched
 *                         with fnmatch(3) in the constructor, never on the
 *                         fork path.
 *
 * A program started with AT_SECURE (setuid/setgid, file capabilities) is
 * left untouched: the person who set the environment is not the one whose
 * privileges the program runs with, and system-wide (/etc/ld.so.preload,
 * the only way we get loaded there) such a program must behave as without
 * us.  The constructor reads no variable and no file in it; the
 * interposers pass through.
 *
 * Statically linked programs never load us (ld.so does not run).  An
 * unmatched program reads the precompiled gate, not the rules text (gate.c).
 *
 * This file: the fork path, the interposers and the constructor.  The
 * rules-file reader is rules.c, the stats file's safe open stats_file.c,
 * the vfork entry vfork.c (shared declarations: shim_int.h).
 *
 * The fork path: no malloc, no locks, no stdio, no libnuma; raw syscalls,
 * C11 atomics, static/stack buffers only.  Every failure degrades to the
 * plain call and bumps a counter.  Not covered: statically linked programs
 * and setuid/setgid programs (ld.so ignores LD_PRELOAD for them; they still
 * inherit the policy their parent had), raw syscall(SYS_fork/SYS_clone),
 * glibc's clone() and internal spawns other than system()/popen().
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "numad_shim.h"
#include "shim_int.h"

#define VISIBLE __attribute__((visibility("default")))

#define MAX_CFG_NODES 64
#define LONG_BITS (8 * (int)sizeof(unsigned long))
#define NODEMASK_LONGS (NODEMASK_BITS / LONG_BITS)
#define MAXNODE_ARG (NODEMASK_BITS + 1)          /* kernel drops the last bit */
#define CPUMASK_BITS 8192
#define CPUMASK_LONGS (CPUMASK_BITS / LONG_BITS)
#define MAX_MAPS 16
#define DEFAULT_TABLE "/run/numad-py/node-table"

#define MPOL_DEFAULT_ 0
#define MPOL_PREFERRED_ 1
#define MPOL_BIND_ 2
#define MPOL_INTERLEAVE_ 3
#define MPOL_PREFERRED_MANY_ 5
#define MPOL_WEIGHTED_INTERLEAVE_ 6
#define MPOL_F_NUMA_BALANCING_ (1 << 13)

enum { STATE_DORMANT = 0, STATE_ACTIVE = 1, STATE_BAD_CONFIG = 2 };
enum { STRAT_FIXED = 1, STRAT_SPREAD, STRAT_LEAST };

/* ---- configuration: written by the constructor only, read-only after ---- */
static int g_strategy;
static int g_mode = MPOL_PREFERRED_;
static int g_pin;
static int g_root_mode;           /* NUMAD_SHIM_ROOT given */
static long g_root_pid;           /* ... and its value */
static volatile int *g_root_flag; /* 1 in the root; in a MADV_WIPEONFORK page: 0 in forked children */
static int g_nnodes;
static int g_nodes[MAX_CFG_NODES];
static unsigned long g_polmask[MAX_CFG_NODES][NODEMASK_LONGS];
static unsigned long g_cpumask[MAX_CFG_NODES][CPUMASK_LONGS];
static int g_has_cpus[MAX_CFG_NODES];
static long long g_child_bytes = 64LL << 20;
static char g_table_path[512] = DEFAULT_TABLE;
static int g_vfork_ok = 1;
static char g_self_path[512];     /* root only: this library as LD_PRELOAD names it */
static size_t g_self_len;         /* ... and its length */
static char g_preload_rest[4096]; /* a forked child's LD_PRELOAD without us (child-private) */

/* ---- mutable state: atomics only ----
 * Everything written on every fork lives in one MAP_SHARED anonymous page
 * set up by the constructor: fork does not write-protect shared mappings,
 * so neither parent nor child takes a copy-on-write fault for our
 * bookkeeping (a private .bss write would cost one fault per fork).
 * Forked children therefore share these counters with their parent. */
struct hot {
    struct numad_shim_stats stats;
    unsigned long rr;
    unsigned long long debit_gen;
    long long debit[MAX_CFG_NODES];
};
static struct hot g_hot_static;
static struct hot *g_hot = &g_hot_static;
/* written rarely (only when mapping the table): private is fine */
static struct { void *addr; size_t len; } g_maps[MAX_MAPS];
static int g_nmaps;
static int g_cur_map = -1;
static long long g_last_map_try_ns = -1;
static struct numad_shim_stats *g_stats = &g_hot_static.stats;

/* ---- the real functions (see resolve_signal_safe) ---- */
typedef pid_t (*fork_fn)(void);
typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                        const posix_spawnattr_t *, char *const[], char *const[]);
typedef int (*system_fn)(const char *);
typedef FILE *(*popen_fn)(const char *, const char *);
typedef int (*execv_fn)(const char *, char *const[]);
typedef int (*execve_fn)(const char *, char *const[], char *const[]);

/* What every process's constructor writes or reads, together: each page of
 * ours a process touches costs it a page fault, and system-wide every
 * process pays them (spread over the .bss between the large arrays,
 * these took three).  64 bytes, 64-aligned: one page.  vfork.c's entry
 * reads .vfork at offset 0. */
HIDDEN struct start {
    void *vfork;
    fork_fn fork, _Fork;
    execv_fn execv;
    execve_fn execve;
    int secure;                   /* AT_SECURE: the environment is not trusted */
    int state;                    /* STATE_* */
} g_start __attribute__((aligned(64)));
_Static_assert(sizeof(struct start) <= 64 && offsetof(struct start, vfork) == 0, "g_start layout");

static spawn_fn real_posix_spawn, real_posix_spawnp;
static system_fn real_system;
static popen_fn real_popen;
static execv_fn real_execvp;
static execve_fn real_execvpe;

static inline void count(int which)
{
    __atomic_fetch_add(&g_stats->counters[which], 1, __ATOMIC_RELAXED);
}

static inline void fallback(int reason)
{
    count(NC_FALLBACK);
    count(reason);
}

static inline long long now_ns(void)
{
    struct timespec ts;
    /* vDSO; async-signal-safe */
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* Node table: mapped lazily (raw syscalls, lock-free), never unmapped once  */
/* published to readers (another thread may be reading it).                  */

static int table_map(void)
{
    long long now = now_ns();
    long long last = __atomic_load_n(&g_last_map_try_ns, __ATOMIC_RELAXED);
    if (last >= 0 && now - last < 1000000000LL)
        return -1;                      /* at most one attempt per second */
    if (!__atomic_compare_exchange_n(&g_last_map_try_ns, &last, now, 0,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        return -1;                      /* another thread is trying right now */

    long fd = rsys(SYS_openat, AT_FDCWD, (long)g_table_path, O_RDONLY | O_CLOEXEC, 0, 0);
    if (fd < 0)
        return -1;
    long len = rsys(SYS_lseek, fd, 0, SEEK_END, 0, 0);
    if (len < (long)sizeof(struct numad_table_header) ||
        len > (long)(sizeof(struct numad_table_header) +
                     NUMAD_TABLE_MAX_ENTRIES * sizeof(struct numad_table_entry))) {
        rsys(SYS_close, fd, 0, 0, 0, 0);
        return -1;
    }
    long addr = rsys6(SYS_mmap, 0, len, PROT_READ, MAP_SHARED, fd, 0);
    rsys(SYS_close, fd, 0, 0, 0, 0);
    if (addr < 0 && addr > -4096)
        return -1;
    const struct numad_table_header *h = (const void *)addr;
    if (memcmp(h->magic, NUMAD_TABLE_MAGIC, 8) != 0 || h->version != NUMAD_TABLE_VERSION ||
        h->header_size != sizeof(*h) || h->entry_size != sizeof(struct numad_table_entry) ||
        h->nr_entries > NUMAD_TABLE_MAX_ENTRIES ||
        sizeof(*h) + (size_t)h->nr_entries * sizeof(struct numad_table_entry) > (size_t)len) {
        rsys(SYS_munmap, addr, len, 0, 0, 0);
        return -1;
    }
    int slot = __atomic_fetch_add(&g_nmaps, 1, __ATOMIC_RELAXED);
    if (slot >= MAX_MAPS) {
        rsys(SYS_munmap, addr, len, 0, 0, 0);
        return -1;
    }
    g_maps[slot].addr = (void *)addr;
    g_maps[slot].len = (size_t)len;
    __atomic_store_n(&g_cur_map, slot, __ATOMIC_RELEASE);
    return slot;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Least-loaded choice; returns a config slot or -counter. */
static int choose_least_loaded(void)
{
    int slot = __atomic_load_n(&g_cur_map, __ATOMIC_ACQUIRE);
    if (slot < 0) {
        slot = table_map();
        if (slot < 0)
            return -NC_FB_NO_TABLE;
    }
    const struct numad_table_header *h = g_maps[slot].addr;
    if (__atomic_load_n(&h->flags, __ATOMIC_RELAXED) & NUMAD_TABLE_SUPERSEDED) {
        int fresh = table_map();
        if (fresh >= 0) {
            slot = fresh;
            h = g_maps[slot].addr;
        }
    }
    size_t cap = (g_maps[slot].len - sizeof(*h)) / sizeof(struct numad_table_entry);
    const volatile struct numad_table_entry *ent = (const void *)(h + 1);

    for (int attempt = 0; attempt < 64; attempt++) {
        uint64_t s1 = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
        if (s1 & 1) {
            cpu_relax();
            continue;
        }
        uint64_t gen = __atomic_load_n(&h->generation, __ATOMIC_RELAXED);
        uint64_t expires = __atomic_load_n(&h->expires_ns, __ATOMIC_RELAXED);
        uint32_t nr = __atomic_load_n(&h->nr_entries, __ATOMIC_RELAXED);
        if (nr > cap)
            nr = (uint32_t)cap;
        unsigned long long dgen = __atomic_load_n(&g_hot->debit_gen, __ATOMIC_RELAXED);
        int best = -1;
        long long best_score = 0;
        for (int i = 0; i < g_nnodes; i++) {
            int node = g_nodes[i];
            if ((uint32_t)node >= nr || !(ent[node].flags & NUMAD_ENTRY_PRESENT))
                continue;
            long long score = (long long)ent[node].free_bytes;
            if (dgen == gen)
                score -= __atomic_load_n(&g_hot->debit[i], __ATOMIC_RELAXED);
            if (best < 0 || score > best_score) {
                best = i;
                best_score = score;
            }
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&h->seq, __ATOMIC_RELAXED) != s1)
            continue;
        if (expires && (unsigned long long)now_ns() > expires)
            return -NC_FB_STALE_TABLE;
        if (best < 0)
            return -NC_FB_NO_CANDIDATE;
        if (dgen != gen) {
            /* new generation: forget the local debits (racy by design: a heuristic) */
            for (int i = 0; i < g_nnodes; i++)
                __atomic_store_n(&g_hot->debit[i], 0, __ATOMIC_RELAXED);
            __atomic_store_n(&g_hot->debit_gen, gen, __ATOMIC_RELAXED);
        }
        __atomic_fetch_add(&g_hot->debit[best], g_child_bytes, __ATOMIC_RELAXED);
        return best;
    }
    return -NC_FB_TABLE_BUSY;
}

static int choose_slot(void)
{
    switch (g_strategy) {
    case STRAT_FIXED:
        return 0;
    case STRAT_SPREAD:
        return (int)(__atomic_fetch_add(&g_hot->rr, 1, __ATOMIC_RELAXED) % (unsigned long)g_nnodes);
    case STRAT_LEAST:
        return choose_least_loaded();
    }
    return -NC_FB_CONFIG;
}

/* ------------------------------------------------------------------------ */
/* Placement around a call.                                                   */

struct placement {
    int placed;              /* the policy is the child's: restore afterwards if changed */
    int changed;             /* we changed the thread's policy */
    int slot;
    int old_mode;
    unsigned long old_mask[NODEMASK_LONGS];
};

/* Root mode compares pids (one getpid syscall) instead of clearing a flag
 * in forked children: a write in the child would cost it a copy-on-write
 * fault on our .bss page, more than the syscall. */
static inline int active_here(void)
{
    if (g_start.state == STATE_DORMANT)
        return 0;
    if (!g_root_mode)
        return 1;
    if (g_root_flag)
        return *g_root_flag;
    return rsys(SYS_getpid, 0, 0, 0, 0, 0) == g_root_pid;
}

/* Restore errno without dirtying the TLS page when it is unchanged. */
static inline void set_errno(int e)
{
    if (errno != e)
        errno = e;
}

static int place_begin(struct placement *pl)
{
    pl->placed = 0;
    pl->changed = 0;
    if (!active_here()) {
        if (g_stats != &g_hot_static.stats) /* shared counters only: no private page to dirty */
            count(NC_PASSTHROUGH);
        return 0;
    }
    count(NC_CALLS);
    if (g_start.state == STATE_BAD_CONFIG) {
        fallback(NC_FB_CONFIG);
        return 0;
    }
    int slot = choose_slot();
    if (slot < 0) {
        fallback(-slot);
        return 0;
    }
    long rc = rsys(SYS_get_mempolicy, (long)&pl->old_mode, (long)pl->old_mask, MAXNODE_ARG, 0, 0);
    if (rc < 0) {
        fallback(NC_FB_GET_POLICY);
        return 0;
    }
    if (pl->old_mode != g_mode ||
        memcmp(pl->old_mask, g_polmask[slot], sizeof(pl->old_mask)) != 0) {
        rc = rsys(SYS_set_mempolicy, g_mode, (long)g_polmask[slot], MAXNODE_ARG, 0, 0);
        if (rc < 0) {
            fallback(NC_FB_SET_POLICY);
            return 0;
        }
        pl->changed = 1;
    }
    pl->slot = slot;
    pl->placed = 1;
    count(NC_PLACED);
    return 1;
}

static void place_end(struct placement *pl)
{
    if (!pl->placed || !pl->changed)
        return;
    if (rsys(SYS_set_mempolicy, pl->old_mode, (long)pl->old_mask, MAXNODE_ARG, 0, 0) < 0)
        count(NC_RESTORE_FAILED);
}

/* In a child (fork) or vfork child: only per-task kernel state is touched. */
static void pin_child(int slot)
{
    if (!g_pin)
        return;
    if (!g_has_cpus[slot] ||
        rsys(SYS_sched_setaffinity, 0, sizeof(g_cpumask[slot]), (long)g_cpumask[slot], 0, 0) < 0)
        count(NC_PIN_FAILED);
}

/* For spawns, the child inherits the caller's affinity: set it around the call. */
struct affinity {
    int saved;
    unsigned long old[CPUMASK_LONGS];
};

static void affinity_begin(struct placement *pl, struct affinity *af)
{
    af->saved = 0;
    if (!pl->placed || !g_pin)
        return;
    if (!g_has_cpus[pl->slot]) {
        count(NC_PIN_FAILED);
        return;
    }
    long n = rsys(SYS_sched_getaffinity, 0, sizeof(af->old), (long)af->old, 0, 0);
    if (n < 0) {
        count(NC_PIN_FAILED);
        return;
    }
    if (rsys(SYS_sched_setaffinity, 0, sizeof(g_cpumask[pl->slot]), (long)g_cpumask[pl->slot], 0, 0) < 0) {
        count(NC_PIN_FAILED);
        return;
    }
    af->saved = (int)n;
}

static void affinity_end(struct affinity *af)
{
    if (af->saved)
        rsys(SYS_sched_setaffinity, 0, af->saved, (long)af->old, 0, 0);
}

/* ------------------------------------------------------------------------ */
/* Interposers.                                                               */

static void *late(const char *name)
{
    /* Reached at the first call in a process that does not place (see
     * resolve_rest), or when another constructor forks before ours ran.
     * Two threads racing here store the same pointer. */
    return dlsym(RTLD_NEXT, name);
}

/* Drop this library from the calling process's LD_PRELOAD (other libraries
 * stay).  Edits environ in place, no malloc, no locks, no libc call (see
 * shim_int.h): called right before an exec, when the old image is about to
 * go anyway. */
static void drop_self_from_preload(void)
{
    if (!g_self_len || !environ)
        return;
    for (char **e = environ; *e; e++) {
        if (!has_prefix(*e, "LD_PRELOAD="))
            continue;
        const char *v = *e + 11;
        char *out = g_preload_rest + 11;
        size_t room = sizeof(g_preload_rest) - 12, n = 0;
        int found = 0;
        while (*v) {
            while (*v == ' ' || *v == ':')
                v++;
            const char *t = v;
            while (*v && *v != ' ' && *v != ':')
                v++;
            size_t len = (size_t)(v - t);
            if (len == g_self_len && same_bytes(t, g_self_path, len)) {
                found = 1;
                continue;
            }
            if (!len)
                break;
            if (n + len + 1 > room)
                return;                   /* too long to rewrite: leave it as it is */
            if (n)
                out[n++] = ' ';
            while (len--)
                out[n++] = *t++;
        }
        if (!found)
            return;
        out[n] = '\0';
        if (n) {
            for (int k = 0; k < 11; k++)
                g_preload_rest[k] = "LD_PRELOAD="[k];
            *e = g_preload_rest;
            return;
        }
        do                                /* nothing else preloaded: remove the entry */
            e[0] = e[1];
        while (*e++);
        return;
    }
}

static pid_t do_fork(fork_fn real)
{
    int saved_errno = errno;
    struct placement pl;
    place_begin(&pl);
    /* Only if changed: after the previous fork every page of ours is write-protected,
     * and a write costs a fault even once the child is gone. */
    set_errno(saved_errno);
    pid_t pid = real();
    if (pid == 0) {
        /* child: async-signal-safe only, and no memory writes of ours
         * (each would be a copy-on-write fault) */
        if (pl.placed && g_pin)
            pin_child(pl.slot);
        return 0;
    }
    int e = errno;
    place_end(&pl);
    set_errno(e);
    return pid;
}

VISIBLE pid_t fork(void)
{
    if (!g_start.fork)
        g_start.fork = (fork_fn)late("fork");
    return do_fork(g_start.fork);
}

VISIBLE pid_t _Fork(void)
{
    if (!g_start._Fork)
        g_start._Fork = (fork_fn)late("_Fork");
    if (!g_start._Fork) {
        errno = ENOSYS;
        return -1;
    }
    return do_fork(g_start._Fork);
}

/* Around a call that creates a child and returns in the parent (posix_spawn,
 * system, popen): the placement and CPUs the child inherits are set for the
 * call's duration, and the caller's errno is kept on both sides. */
struct around {
    struct placement pl;
    struct affinity af;
};

static void around_begin(struct around *a)
{
    int saved_errno = errno;
    place_begin(&a->pl);
    affinity_begin(&a->pl, &a->af);
    set_errno(saved_errno);
}

static void around_end(struct around *a)
{
    int e = errno;
    affinity_end(&a->af);
    place_end(&a->pl);
    set_errno(e);
}

static int do_spawn(spawn_fn real, pid_t *pid, const char *path,
                    const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
                    char *const argv[], char *const envp[])
{
    struct around a;
    around_begin(&a);
    int rc = real(pid, path, fa, attr, argv, envp);
    around_end(&a);
    return rc;
}

VISIBLE int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                        const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    if (!real_posix_spawn)
        real_posix_spawn = (spawn_fn)late("posix_spawn");
    return do_spawn(real_posix_spawn, pid, path, fa, attr, argv, envp);
}

VISIBLE int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                         const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    if (!real_posix_spawnp)
        real_posix_spawnp = (spawn_fn)late("posix_spawnp");
    return do_spawn(real_posix_spawnp, pid, file, fa, attr, argv, envp);
}

VISIBLE int system(const char *command)
{
    if (!real_system)
        real_system = (system_fn)late("system");
    if (command == NULL)
        return real_system(command);
    struct around a;
    around_begin(&a);
    int rc = real_system(command);
    around_end(&a);
    return rc;
}

VISIBLE FILE *popen(const char *command, const char *type)
{
    if (!real_popen)
        real_popen = (popen_fn)late("popen");
    struct around a;
    around_begin(&a);
    FILE *f = real_popen(command, type);
    around_end(&a);
    return f;
}

/* ---- exec: the root's forked children exec without the shim ----
 *
 * What a child of the root execs would load the shim only to pass through:
 * it inherits its node from the kernel.  So a fork()ed child of the root
 * drops the shim from LD_PRELOAD right before exec, when the write costs
 * nothing (the address space is about to be replaced); doing it at fork
 * would cost every child that never execs a copy-on-write fault.  Only
 * when the exec uses environ (execv, execvp, execl, execlp, or execve/
 * execvpe/execle given environ itself): an explicit envp is the caller's.
 * Not in the root (a root that execs itself, as `sh -c` does, keeps the
 * shim) and not in a vfork child, which shares the root's memory and so
 * reads the root's flag as 1.  Without the MADV_WIPEONFORK flag the two
 * cannot be told apart cheaply: nothing is dropped. */
static inline int root_child_here(void)
{
    return g_self_path[0] && g_root_flag && !*g_root_flag;
}

static void before_exec(char *const envp[])
{
    if (envp == environ && root_child_here())
        drop_self_from_preload();
}

static int do_execv(const char *path, char *const argv[])
{
    if (!g_start.execv)
        g_start.execv = (execv_fn)late("execv");
    before_exec(environ);
    return g_start.execv(path, argv);
}

static int do_execvp(const char *file, char *const argv[])
{
    if (!real_execvp)
        real_execvp = (execv_fn)late("execvp");
    before_exec(environ);
    return real_execvp(file, argv);
}

static int do_execve(const char *path, char *const argv[], char *const envp[])
{
    if (!g_start.execve)
        g_start.execve = (execve_fn)late("execve");
    before_exec(envp);
    return g_start.execve(path, argv, envp);
}

VISIBLE int execv(const char *path, char *const argv[]) { return do_execv(path, argv); }
VISIBLE int execvp(const char *file, char *const argv[]) { return do_execvp(file, argv); }
VISIBLE int execve(const char *path, char *const argv[], char *const envp[]) { return do_execve(path, argv, envp); }

VISIBLE int execvpe(const char *file, char *const argv[], char *const envp[])
{
    if (!real_execvpe)
        real_execvpe = (execve_fn)late("execvpe");
    before_exec(envp);
    return real_execvpe(file, argv, envp);
}

/* The list forms collect argv on the stack, as glibc does; n counts arg
 * itself (declared non-null), argv[n] is the terminating NULL. */
static size_t count_args(va_list ap)
{
    size_t n = 1;
    while (va_arg(ap, const char *))
        n++;
    return n;
}

/* Fills argv[0..n] from the list; execle's envp follows the NULL. */
static char *const *fill_args(char **argv, const char *arg, size_t n, va_list ap, int with_envp)
{
    argv[0] = (char *)arg;
    for (size_t i = 1; i <= n; i++)
        argv[i] = va_arg(ap, char *);
    return with_envp ? va_arg(ap, char *const *) : NULL;
}

#define LIST_TO_ARGV(arg, argv, envp, with_envp)          \
    va_list ap;                                           \
    va_start(ap, arg);                                    \
    size_t n_ = count_args(ap);                           \
    va_end(ap);                                           \
    char *argv[n_ + 1];                                   \
    va_start(ap, arg);                                    \
    char *const *envp = fill_args(argv, arg, n_, ap, with_envp); \
    va_end(ap)

VISIBLE int execl(const char *path, const char *arg, ...)
{
    LIST_TO_ARGV(arg, argv, envp, 0);
    (void)envp;
    return do_execv(path, argv);
}

VISIBLE int execlp(const char *file, const char *arg, ...)
{
    LIST_TO_ARGV(arg, argv, envp, 0);
    (void)envp;
    return do_execvp(file, argv);
}

VISIBLE int execle(const char *path, const char *arg, ...)
{
    LIST_TO_ARGV(arg, argv, envp, 1);
    return do_execve(path, argv, envp);
}

/* ---- vfork: see vfork.c for the assembly entry point ---- */

static __thread struct placement tls_vfork_pl __attribute__((tls_model("initial-exec")));
static __thread int tls_vfork_errno __attribute__((tls_model("initial-exec")));

/* Called by the vfork entry before the syscall.  Returns 0: tail-jump to the
 * real vfork unchanged; 1: the entry does the raw vfork syscall itself. */
HIDDEN int numad_vfork_prepare(void)
{
    if (!g_start.vfork)
        g_start.vfork = late("vfork");
    if (!active_here() || !g_vfork_ok) {
        if (active_here()) {
            count(NC_CALLS);
            fallback(NC_VFORK_UNPLACED);
        } else {
            count(NC_PASSTHROUGH);
        }
        return g_start.vfork ? 0 : 1;
    }
    tls_vfork_errno = errno;
    place_begin(&tls_vfork_pl);
    errno = tls_vfork_errno;
    return 1;
}

/* The child, still on the parent's stack and memory: writes nothing in
 * memory (TLS and statics are the parent's), only per-task kernel state. */
HIDDEN void numad_vfork_child(void)
{
    const struct placement *pl = &tls_vfork_pl;
    if (pl->placed && g_pin && g_has_cpus[pl->slot])
        rsys(SYS_sched_setaffinity, 0, sizeof(g_cpumask[pl->slot]), (long)g_cpumask[pl->slot], 0, 0);
}

/* The parent, once the child has exec'ed or exited. */
HIDDEN long numad_vfork_parent(long rc)
{
    place_end(&tls_vfork_pl);
    tls_vfork_pl.placed = 0;
    if (rc < 0 && rc > -4096) {
        errno = (int)-rc;
        return -1;
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Introspection (for tests and `numad-py`): copy this process's counters.   */

VISIBLE int numad_shim_counters(uint64_t *out, int n)
{
    if (n > NUMAD_NR_COUNTERS)
        n = NUMAD_NR_COUNTERS;
    for (int i = 0; i < n; i++)
        out[i] = __atomic_load_n(&g_stats->counters[i], __ATOMIC_RELAXED);
    return n;
}

/* 0 dormant, 1 active here, 2 bad config, 3 active config but not the root. */
VISIBLE int numad_shim_state(void)
{
    if (g_start.state == STATE_ACTIVE && !active_here())
        return 3;
    return g_start.state;
}

/* ------------------------------------------------------------------------ */
/* Constructor: everything that may allocate, lock or parse happens here.    */

static int read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    while (got + 1 < size) {
        ssize_t n = read(fd, buf + got, size - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return (int)got;
}

/* "0-3,5" -> callback per id; returns -1 on syntax error or id >= limit. */
HIDDEN int numad_parse_list(const char *s, int limit, void (*add)(int, void *), void *ctx)
{
    int any = 0;
    while (*s) {
        while (*s == ' ' || *s == '\n' || *s == '\t')
            s++;
        if (!*s)
            break;
        if (*s < '0' || *s > '9')
            return -1;
        long lo = strtol(s, (char **)&s, 10), hi = lo;
        if (*s == '-') {
            s++;
            if (*s < '0' || *s > '9')
                return -1;
            hi = strtol(s, (char **)&s, 10);
        }
        if (hi < lo || hi >= limit)
            return -1;
        for (long i = lo; i <= hi; i++)
            add((int)i, ctx);
        any = 1;
        while (*s == ' ' || *s == '\n' || *s == '\t')
            s++;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return any ? 0 : -1;
}

static void add_node(int id, void *ctx)
{
    (void)ctx;
    for (int i = 0; i < g_nnodes; i++)
        if (g_nodes[i] == id)
            return;
    if (g_nnodes < MAX_CFG_NODES)
        g_nodes[g_nnodes++] = id;
    else
        g_start.state = STATE_BAD_CONFIG;
}

static void add_cpu(int id, void *ctx)
{
    unsigned long *mask = ctx;
    mask[id / LONG_BITS] |= 1UL << (id % LONG_BITS);
}

static void open_stats(const char *path)
{
    int fd = numad_stats_open_fd(path);
    if (fd < 0)
        return;
    if (ftruncate(fd, sizeof(struct numad_shim_stats)) != 0) {   /* no-op if already that size */
        close(fd);
        return;
    }
    void *p = mmap(NULL, sizeof(struct numad_shim_stats), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return;
    struct numad_shim_stats *st = p;
    if (memcmp(st->magic, NUMAD_STATS_MAGIC, 8) != 0) {
        st->version = NUMAD_STATS_VERSION;
        st->nr_counters = NUMAD_NR_COUNTERS;
        memcpy(st->magic, NUMAD_STATS_MAGIC, 8);
    }
    /* counters from before the constructor (none in practice) are kept local */
    g_stats = st;
}

/* Every NUMAD_SHIM_* variable is read through here: none under AT_SECURE.  getenv(3)
 * without the call (shim_int.h: every process runs this). */
static const char *env(const char *name)
{
    if (g_start.secure || !environ)
        return NULL;
    size_t n = text_length(name);
    for (char **e = environ; *e; e++)
        if (same_bytes(*e, name, n) && (*e)[n] == '=')
            return (*e)[n + 1] ? *e + n + 1 : NULL;
    return NULL;
}

/* "all": every node with memory (sysfs has_memory). */
static int add_nodes(const char *list, const char *sysfs)
{
    if (!strcmp(list, "all")) {
        static char mem[4096];
        char path[600];
        snprintf(path, sizeof(path), "%s/devices/system/node/has_memory", sysfs);
        if (read_file(path, mem, sizeof(mem)) <= 0)
            return -1;
        list = mem;
    }
    return numad_parse_list(list, NODEMASK_BITS, add_node, NULL);
}

/* The configuration proper, from env vars or from a rules-file line. */
static void apply_config(const char *strategy, const char *mode, const char *nodes, int pin,
                         const char *table)
{
    const char *v;
    const char *sysfs = env("NUMAD_SHIM_SYSFS");
    if (!sysfs)
        sysfs = "/sys";

    if (!strcmp(strategy, "fixed"))
        g_strategy = STRAT_FIXED;
    else if (!strcmp(strategy, "spread") || !strcmp(strategy, "round-robin"))
        g_strategy = STRAT_SPREAD;
    else if (!strcmp(strategy, "least-loaded"))
        g_strategy = STRAT_LEAST;
    else
        g_start.state = STATE_BAD_CONFIG;

    if (!mode || !strcmp(mode, "preferred"))
        g_mode = MPOL_PREFERRED_;
    else if (!strcmp(mode, "bind"))
        g_mode = MPOL_BIND_;
    else if (!strcmp(mode, "interleave"))
        g_mode = MPOL_INTERLEAVE_;
    else if (!strcmp(mode, "preferred-many") || !strcmp(mode, "preferred_many"))
        g_mode = MPOL_PREFERRED_MANY_;
    else if (!strcmp(mode, "weighted-interleave"))
        g_mode = MPOL_WEIGHTED_INTERLEAVE_;    /* weights: the machine's table */
    else
        g_start.state = STATE_BAD_CONFIG;
    if ((v = env("NUMAD_SHIM_BALANCING")) && strcmp(v, "0") != 0)
        g_mode |= MPOL_F_NUMA_BALANCING_;      /* the kernel refuses it but for bind/preferred-many */

    if (!nodes || add_nodes(nodes, sysfs) < 0 || g_nnodes == 0)
        g_start.state = STATE_BAD_CONFIG;
    if (g_strategy == STRAT_FIXED && g_nnodes != 1)
        g_start.state = STATE_BAD_CONFIG;

    g_pin = pin;
    if ((v = env("NUMAD_SHIM_TABLE")))            /* the environment wins */
        table = v;
    if (table) {
        if (strlen(table) < sizeof(g_table_path))
            strcpy(g_table_path, table);
        else
            g_start.state = STATE_BAD_CONFIG;
    }
    if ((v = env("NUMAD_SHIM_CHILD_BYTES")))
        g_child_bytes = atoll(v);

    static char buf[65536];
    for (int i = 0; i < g_nnodes; i++) {
        int node = g_nodes[i];
        g_polmask[i][node / LONG_BITS] |= 1UL << (node % LONG_BITS);
        char path[600];
        snprintf(path, sizeof(path), "%s/devices/system/node/node%d/cpulist", sysfs, node);
        if (read_file(path, buf, sizeof(buf)) < 0) {
            g_start.state = STATE_BAD_CONFIG;           /* no such node */
            continue;
        }
        if (numad_parse_list(buf, CPUMASK_BITS, add_cpu, g_cpumask[i]) == 0)
            g_has_cpus[i] = 1;                    /* empty list: memory-only node */
    }
}

static void map_hot(void)
{
    void *hot = mmap(NULL, sizeof(struct hot), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (hot != MAP_FAILED) {
        g_hot = hot;
        if (g_stats == &g_hot_static.stats)
            g_stats = &g_hot->stats;
    }
}

static void configure_env(const char *strategy)
{
    const char *v;
    g_start.state = STATE_ACTIVE;

    if (!(v = env("NUMAD_SHIM_ROOT")) || atol(v) == (long)getpid())
        map_hot();
    if ((v = env("NUMAD_SHIM_ROOT"))) {
        g_root_mode = 1;
        g_root_pid = atol(v);
        if (g_root_pid != (long)getpid())
            return;           /* a descendant: passes through, needs no more setup */
        Dl_info self;
        if (dladdr((void *)drop_self_from_preload, &self) && self.dli_fname &&
            strlen(self.dli_fname) < sizeof(g_self_path)) {
            strcpy(g_self_path, self.dli_fname);
            g_self_len = strlen(g_self_path);
        }
        /* Our own page, wiped (zero) in forked children: no write needed there. */
        void *flag = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (flag != MAP_FAILED) {
            if (madvise(flag, 4096, 18 /* MADV_WIPEONFORK, Linux 4.14+ */) == 0) {
                *(int *)flag = 1;
                g_root_flag = flag;
            } else {
                munmap(flag, 4096);
            }
        }
    }
    v = env("NUMAD_SHIM_CPUS");
    apply_config(strategy, env("NUMAD_SHIM_MODE"), env("NUMAD_SHIM_NODES"),
                 v && strcmp(v, "0") != 0, NULL);
}

/* ---- the rules file (format: numad_shim.h, docs/shim.md) ---- */

static int g_rule = RULE_NO_FILE;   /* what the rules file decided for this process */
static char g_rule_name[128];

static void configure_rules(void)
{
    const char *path = env("NUMAD_SHIM_RULES");
    struct numad_rule r;
    const char *table;
    if (!path)
        path = DEFAULT_RULES;
    /* System-wide, nearly every process is unmatched: the gate tells so
     * without reading the text (gate.c); only a possible match reads it. */
    if (!numad_gate_admits(path)) {
        g_rule = RULE_GATED;
        return;
    }
    g_rule = numad_rules_evaluate(path, &r, &table);
    if (g_rule == RULE_INVALID) {
        count(NC_RULES_INVALID);
        return;
    }
    if (g_rule < 0)
        return;
    snprintf(g_rule_name, sizeof(g_rule_name), "%s", r.name);
    if (!strcmp(r.action, "none"))
        return;                                /* a rule claims us and spreads nothing */
    g_start.state = STATE_ACTIVE;
    map_hot();
    count(NC_RULES_MATCHED);
    apply_config(r.action, r.mode, r.nodes, r.pin, table);
}

static void configure(void)
{
    const char *v;
    if ((v = env("NUMAD_SHIM_STATS")))
        open_stats(v);
    if ((v = env("NUMAD_SHIM_DISABLE")) && strcmp(v, "0") != 0)
        return;
    if ((v = env("NUMAD_SHIM_HOME_NODE")))
        numad_home_configure(v);
    const char *strategy = env("NUMAD_SHIM_STRATEGY");
    if (strategy) {
        g_rule = RULE_ENV;
        configure_env(strategy);
    } else {
        configure_rules();                     /* the daemon's policy decides */
    }

    if (g_start.state == STATE_DORMANT)
        return;                                /* vfork passes through anyway */
#if defined(__x86_64__)
    /* With a shadow stack our vfork entry (which pops its return address)
     * would not be balanced: pass vfork through unplaced instead. */
    unsigned long long features = 0;
    if (syscall(SYS_arch_prctl, 0x5005 /* ARCH_SHSTK_STATUS */, &features) == 0 && (features & 1))
        g_vfork_ok = 0;
#else
    g_vfork_ok = 0;
#endif
}

/* Which rules-file line configured this process: its index (>= 0) and name,
 * or -1 no rules file, -2 invalid file, -3 no line matched, -4 comm not in
 * the file's include list, -5 configured by NUMAD_SHIM_* env vars instead,
 * -6 the gate proved no placing line matches (the text was not read),
 * -7 an AT_SECURE program (untouched). */
VISIBLE int numad_shim_rule(char *name, int size)
{
    if (name && size > 0)
        snprintf(name, (size_t)size, "%s", g_rule >= 0 ? g_rule_name : "");
    return g_rule;
}

/* The real functions.  POSIX lets a signal handler call fork, _Fork and the
 * execv/execve family, so those are resolved here in every process: a
 * dlsym from a signal handler could deadlock.  A process that places
 * children resolves the rest here too, so its fork path never calls dlsym;
 * any other process (system-wide, nearly all of them) resolves the rest at
 * their first call (late()): six dlsym calls fewer per exec. */
static void resolve_signal_safe(void)
{
    g_start.fork = (fork_fn)dlsym(RTLD_NEXT, "fork");
    g_start._Fork = (fork_fn)dlsym(RTLD_NEXT, "_Fork");
    g_start.vfork = dlsym(RTLD_NEXT, "vfork");
    g_start.execv = (execv_fn)dlsym(RTLD_NEXT, "execv");
    g_start.execve = (execve_fn)dlsym(RTLD_NEXT, "execve");
}

static void resolve_rest(void)
{
    real_posix_spawn = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawn");
    real_posix_spawnp = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawnp");
    real_system = (system_fn)dlsym(RTLD_NEXT, "system");
    real_popen = (popen_fn)dlsym(RTLD_NEXT, "popen");
    real_execvp = (execv_fn)dlsym(RTLD_NEXT, "execvp");
    real_execvpe = (execve_fn)dlsym(RTLD_NEXT, "execvpe");
}

__attribute__((constructor)) static void numad_shim_init(void)
{
    int saved_errno = errno;
    g_start.secure = getauxval(AT_SECURE) != 0;
    resolve_signal_safe();
    if (g_start.secure) {
        /* setuid/setgid/file capabilities: untouched.  Only /etc/ld.so.preload
         * loads us here; nothing is read, the interposers pass through. */
        g_rule = RULE_SECURE;
        errno = saved_errno;
        return;
    }
    configure();
    if (g_start.state != STATE_DORMANT)
        resolve_rest();
    errno = saved_errno;
}
