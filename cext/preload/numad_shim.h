/*
 * numad-py fork-time placement shim: shared binary layouts.
 *
 * Three small files.  The first and last are fixed-layout, native byte order (little-endian on
 * every platform numad-py targets), naturally aligned 8-byte fields:
 *
 * 1. The NODE TABLE the daemon publishes each scan (default
 *    /run/numad-py/node-table, env NUMAD_SHIM_TABLE overrides).  Read-only
 *    for the shim, mapped MAP_SHARED once and re-read on every fork.
 *
 *      offset  size  field
 *           0     8  magic        "NUMADTB1"
 *           8     4  version      1
 *          12     4  header_size  64
 *          16     4  entry_size   32
 *          20     4  nr_entries   entries that follow; entry i describes node i
 *          24     8  seq          seqlock: odd while the writer is updating
 *          32     8  generation   +1 per publish
 *          40     8  updated_ns   CLOCK_MONOTONIC of the publish
 *          48     8  expires_ns   CLOCK_MONOTONIC after which the table is stale; 0 = never
 *          56     4  flags        bit 0 SUPERSEDED: file replaced, re-open the path
 *          60     4  reserved
 *      entry (32 bytes, at 64 + 32*i):
 *           0     8  free_bytes
 *           8     8  total_bytes
 *          16     4  flags        bit 0 PRESENT (online, has memory), bit 1 HAS_CPUS
 *          20     4  reserved
 *          24     8  reserved
 *
 *    Writer protocol (numad_py/shim/table.py publish_node_table): if the file
 *    exists with the same magic/version/nr_entries it is updated IN PLACE:
 *    seq |= 1 (odd), write entries + generation + times, seq += 1 (even).
 *    Otherwise a new file is written to a temp name and renamed over the
 *    path, and the old file (if any) gets SUPERSEDED so mapped readers
 *    re-open.  A table file is never truncated in place (readers would
 *    take SIGBUS).  Each field is written with one aligned 8-byte store;
 *    with x86-64 store ordering (TSO) the seqlock is then exact; readers
 *    retry a bounded number of times and otherwise fall back.
 *
 * 2. The RULES file (default /run/numad-py/shim-rules, env NUMAD_SHIM_RULES
 *    overrides), text, read only by the constructor and only when
 *    NUMAD_SHIM_STRATEGY is unset.  Written by numad_py/shim/rules.py
 *    publish_shim_rules (temp + rename).  See docs/shim.md:
 *
 *      numad-py-shim-rules 2                    first line, exactly
 *      # comment / blank lines ignored
 *      table<TAB>PATH                           optional node table path
 *      include<TAB>GLOB                         0..64; if any, comm must match one
 *      rule<TAB>NAME<TAB>COMM-GLOB<TAB>EXE-GLOB<TAB>UID<TAB>ACTION<TAB>NODES<TAB>MODE<TAB>CPUS
 *
 *    GLOBs are fnmatch(3) patterns matched with no flags (whole name; '*'
 *    and '?' cross '/'; backslash quotes); an empty field matches anything.  UID: decimal real uid or "-".
 *    ACTION: none | fixed | spread | least-loaded ("none" stops the search:
 *    first match wins).  NODES: node list, "all", or "-" with none.
 *    MODE: preferred | bind | interleave | preferred-many.  CPUS: 0 | 1.
 *    Bounds: file <= 64 KiB, line <= 1023 bytes, <= 64 rule lines,
 *    <= 64 include lines.  Anything else makes the WHOLE file invalid
 *    (counted NC_RULES_INVALID, shim dormant): a partial rule list would
 *    break first-match-wins.
 *
 * 2b. The GATE (rules path + ".gate", e.g. /run/numad-py/shim-rules.gate): the
 *    rules file precompiled by publish_shim_rules (numad_py/shim/gate.py), so that
 *    a program no placing line can match is told so without the text being read:
 *    one open + read (<= 16 KiB, into a stack buffer), a stat of the rules file,
 *    fnmatch over fixed fields.
 *    Binary, fixed layout as above:
 *
 *      offset  size  field
 *           0     8  magic        "NUMADGT1"
 *           8     4  version      1
 *          12     4  header_size  64
 *          16     4  entry_size   256
 *          20     4  nr_entries   one per PLACING rule line (action != none), <= 64
 *          24     8  rules_dev    st_dev of the rules file it was compiled from
 *          32     8  rules_ino    st_ino  (a gate that does not describe the rules
 *          40     8  rules_size   st_size  file now at the path is ignored:
 *          48     8  rules_mtime  st_mtim in ns   the text is read as before)
 *          56     4  flags        bit 0 PASS_ALL: cannot decide, read the rules file
 *          60     4  reserved
 *      entry (256 bytes, at 64 + 256*i):
 *           0     8  uid          real uid, or -1: any
 *           8    64  comm         glob, NUL-terminated, "" any
 *          72   184  exe          glob, NUL-terminated, "" any
 *
 *    No entry matching this program (uid, comm, exe exactly as a rule line
 *    matches) means no placing line can: the shim stays dormant (rule -6).
 *
 * 3. The optional STATS file (env NUMAD_SHIM_STATS=path, ignored under
 *    AT_SECURE): a counter block
 *    every process of the tree maps MAP_SHARED and bumps atomically, so
 *    one file aggregates a whole process tree.  Without it the counters
 *    are per process (read in-process with numad_shim_counters()).
 *
 *           0     8  magic        "NUMADST1"
 *           8     4  version      1
 *          12     4  nr_counters  NUMAD_NR_COUNTERS
 *          16   8*n  counters     uint64, order of enum numad_counter
 */
#ifndef NUMAD_SHIM_H
#define NUMAD_SHIM_H

#include <stdint.h>

#define NUMAD_TABLE_MAGIC "NUMADTB1"
#define NUMAD_TABLE_VERSION 1
#define NUMAD_TABLE_MAX_ENTRIES 1024
#define NUMAD_TABLE_SUPERSEDED 0x1u
#define NUMAD_ENTRY_PRESENT 0x1u
#define NUMAD_ENTRY_HAS_CPUS 0x2u

struct numad_table_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size;
    uint32_t entry_size;
    uint32_t nr_entries;
    uint64_t seq;
    uint64_t generation;
    uint64_t updated_ns;
    uint64_t expires_ns;
    uint32_t flags;
    uint32_t reserved;
};

struct numad_table_entry {
    uint64_t free_bytes;
    uint64_t total_bytes;
    uint32_t flags;
    uint32_t reserved0;
    uint64_t reserved1;
};

_Static_assert(sizeof(struct numad_table_header) == 64, "table header layout");
_Static_assert(sizeof(struct numad_table_entry) == 32, "table entry layout");

#define NUMAD_RULES_HEADER "numad-py-shim-rules 2"   /* 1 held regexes */
#define NUMAD_RULES_MAX_BYTES 65536
#define NUMAD_RULES_MAX_LINE 1023
#define NUMAD_RULES_MAX_RULES 64
#define NUMAD_RULES_MAX_INCLUDES 64

#define NUMAD_GATE_MAGIC "NUMADGT1"
#define NUMAD_GATE_VERSION 1
#define NUMAD_GATE_SUFFIX ".gate"
#define NUMAD_GATE_PASS_ALL 0x1u
#define NUMAD_GATE_COMM 64
#define NUMAD_GATE_EXE 184

struct numad_gate_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size;
    uint32_t entry_size;
    uint32_t nr_entries;
    uint64_t rules_dev;
    uint64_t rules_ino;
    uint64_t rules_size;
    uint64_t rules_mtime_ns;
    uint32_t flags;
    uint32_t reserved;
};

struct numad_gate_entry {
    int64_t uid;
    char comm[NUMAD_GATE_COMM];
    char exe[NUMAD_GATE_EXE];
};

_Static_assert(sizeof(struct numad_gate_header) == 64, "gate header layout");
_Static_assert(sizeof(struct numad_gate_entry) == 256, "gate entry layout");

#define NUMAD_STATS_MAGIC "NUMADST1"
#define NUMAD_STATS_VERSION 1

/* numad_py/shim/stats.py COUNTERS names these (NC_X "x", NC_FB_X "fallback_x");
 * tests/shim/test_shim_layout.py reads this enum and compares. */
enum numad_counter {
    NC_CALLS = 0,          /* interposed calls in a process that places children */
    NC_PLACED,             /* children started with the chosen node's policy */
    NC_PASSTHROUGH,        /* calls in a dormant process (no config, not the root) */
    NC_FALLBACK,           /* placement wanted but a plain call was made (sum of below) */
    NC_FB_CONFIG,          /* bad configuration (unknown strategy/mode, bad node list) */
    NC_FB_NO_TABLE,        /* least-loaded: table missing or malformed */
    NC_FB_STALE_TABLE,     /* least-loaded: table past expires_ns */
    NC_FB_TABLE_BUSY,      /* least-loaded: seqlock never settled */
    NC_FB_NO_CANDIDATE,    /* least-loaded: none of the nodes is present in the table */
    NC_FB_GET_POLICY,      /* get_mempolicy failed (seccomp, ENOSYS) */
    NC_FB_SET_POLICY,      /* set_mempolicy failed (seccomp EPERM, ENOSYS, EINVAL cpuset) */
    NC_RESTORE_FAILED,     /* restoring the parent's policy failed (should not happen) */
    NC_PIN_FAILED,         /* child's sched_setaffinity failed or node has no CPUs */
    NC_VFORK_UNPLACED,     /* vfork passed through unplaced (shadow stack / non-x86-64) */
    NC_RULES_INVALID,      /* rules file unreadable as a whole (bad header, oversized, bad line):
                              counted once per process load; the shim stays dormant */
    NC_RULES_MATCHED,      /* process loads that configured themselves from a rules-file line */
    NUMAD_NR_COUNTERS
};

struct numad_shim_stats {
    char magic[8];
    uint32_t version;
    uint32_t nr_counters;
    uint64_t counters[NUMAD_NR_COUNTERS];
};

#endif
