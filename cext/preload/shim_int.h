/*
 * numad-py shim: what its C files share with each other (not a public ABI;
 * every symbol here is hidden).  shim.c: the fork path, interposers and the
 * constructor; rules.c: the rules-file reader; stats_file.c: opening the
 * shared stats file safely; vfork.c: the vfork entry point.
 */
#ifndef NUMAD_SHIM_INT_H
#define NUMAD_SHIM_INT_H

#define HIDDEN __attribute__((visibility("hidden")))

#define NODEMASK_BITS 1024                       /* MAX_NUMNODES of distro kernels */
#define DEFAULT_RULES "/run/numad-py/shim-rules"

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
