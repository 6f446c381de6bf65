/*
 * numad-py shim: what its C files share with each other (not a public ABI;
 * every symbol here is hidden), with the raw syscalls and string helpers of
 * the paths that call no libc function.  shim.c: the fork path, interposers and the
 * constructor; rules.c: the rules-file reader; stats_file.c: opening the
 * shared stats file safely; vfork.c: the vfork entry point.
 */
#ifndef NUMAD_SHIM_INT_H
#define NUMAD_SHIM_INT_H

#define HIDDEN __attribute__((visibility("hidden")))

#define NODEMASK_BITS 1024                       /* MAX_NUMNODES of distro kernels */
#define DEFAULT_RULES "/run/numad-py/shim-rules"

#include <errno.h>
#include <stddef.h>
#include <unistd.h>
#include <sys/syscall.h>

/* Raw syscalls: return -errno, never touch errno (safe in a vfork child). */

#if defined(__x86_64__)
static inline long rsys6(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#else
static inline long rsys6(long n, long a, long b, long c, long d, long e, long f)
{
    int saved = errno;
    long ret = syscall(n, a, b, c, d, e, f);
    if (ret == -1) {
        ret = -errno;
        errno = saved;
    }
    return ret;
}
#endif
#define rsys(n, a, b, c, d, e) rsys6(n, a, b, c, d, e, 0)

/* String helpers, so that the paths every process runs call no libc function.
 * A libc call is bound lazily at its first use in each process: a symbol
 * lookup through every library's hash tables and, for the string functions
 * (IFUNCs), the resolver and the code of the variant it picks.  On the bench
 * host five such string calls cost 1.7 % of an exec of /bin/true.  Two paths:
 * the constructor of a process no rule names (system-wide: every process),
 * and a root's forked child on its way to exec (the root never made these
 * calls, so every child bound them again: 8 page faults more per fork+exec
 * of /bin/true than without the shim, none since). */
static inline int has_prefix(const char *s, const char *prefix)
{
    while (*prefix)
        if (*s++ != *prefix++)
            return 0;
    return 1;
}

static inline int same_bytes(const char *a, const char *b, size_t n)
{
    while (n--)
        if (*a++ != *b++)
            return 0;
    return 1;
}

static inline size_t text_length(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static inline int same_text(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

/* Is c among the first size bytes of s? */
static inline int has_byte(const char *s, size_t size, char c)
{
    for (size_t i = 0; i < size; i++)
        if (s[i] == c)
            return 1;
    return 0;
}

/* Has the string s any of the bytes of the string set? */
static inline int has_any_of(const char *s, const char *set)
{
    for (; *s; s++)
        for (const char *c = set; *c; c++)
            if (*s == *c)
                return 1;
    return 0;
}

/* numad_shim_rule() results below 0 (>= 0: the index of the matching line) */
#define RULE_NO_FILE (-1)
#define RULE_INVALID (-2)
#define RULE_NO_MATCH (-3)
#define RULE_NOT_INCLUDED (-4)
#define RULE_ENV (-5)
#define RULE_GATED (-6)        /* the gate: no placing line can match; rules file not read */
#define RULE_SECURE (-7)       /* AT_SECURE program: untouched, nothing read */

/* One "rule" line; the strings point into the reader's static buffer. */
struct numad_rule {
    char *name, *comm, *exe, *action, *nodes, *mode;
    long uid;          /* -1: any */
    int pin;
};

/* "0-3,5" -> add(id, ctx) per id; -1 on a syntax error or an id >= limit. */
HIDDEN int numad_parse_list(const char *s, int limit, void (*add)(int, void *), void *ctx);

/* Reads the rules file at path and matches this process (comm, exe, real
 * uid) against it: the index of the first matching line (and *out, and
 * *table = the file's table path or NULL), or RULE_* < 0.  Constructor only
 * (static buffers, fnmatch). */
HIDDEN int numad_rules_evaluate(const char *path, struct numad_rule *out, const char **table);

/* The gate next to the rules file at rules_path (numad_shim.h 2b): 0 when it
 * proves no placing line matches this program, 1 when the rules file must
 * be read (a match, or no usable gate).  Allocates nothing, parses nothing;
 * constructor only (a static buffer). */
HIDDEN int numad_gate_admits(const char *rules_path);

/* An fd for the shared stats file at path, or -1 when it is not safe to
 * write (see stats_file.c). */
HIDDEN int numad_stats_open_fd(const char *path);

/* NUMAD_SHIM_HOME_NODE: from now on, anonymous mmap()s get the task's
 * bind/preferred-many policy with this home node (home.c). */
HIDDEN void numad_home_configure(const char *node);

#endif
