/*
 * numad-py shim: the gate (format: numad_shim.h 2b, written by
 * numad_py/shim/gate.py next to the rules file).
 *
 * System-wide (/etc/ld.so.preload) the shim loads into every process, and
 * almost none of them is named by a rule.  For those the constructor must
 * not read and parse the rules text: the daemon publishes the placing lines
 * precompiled into fixed fields, and this file decides from them with one
 * open + read + close of the gate (into a stack buffer: cheaper than mmap +
 * munmap and a page fault, measured ~3x) and one stat of the rules file
 * (which proves the gate describes the rules file now at the path).
 * Nothing is allocated; fnmatch(3) runs in the C locale of a constructor
 * and allocates nothing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "numad_shim.h"
#include "shim_int.h"

#define GATE_MAX_BYTES (sizeof(struct numad_gate_header) + \
                        NUMAD_RULES_MAX_RULES * sizeof(struct numad_gate_entry))

/* A rule line's match, as rules.c glob_match: "" matches anything. */
static int field_matches(const char *glob, size_t size, const char *subject)
{
    if (!memchr(glob, '\0', size))
        return 1;                              /* unterminated: cannot tell, let the text decide */
    if (!*glob)
        return 1;
    return subject && fnmatch(glob, subject, 0) == 0;
}

static int gate_matches(const struct numad_gate_header *h, const struct numad_gate_entry *ent)
{
    char comm[17] = {0};
    if (prctl(PR_GET_NAME, comm, 0, 0, 0) != 0)
        return 1;
    long uid = (long)getuid();
    char exe[4096];
    int exe_state = 0;                         /* 0 unread, 1 read, -1 unreadable */
    for (uint32_t i = 0; i < h->nr_entries; i++) {
        const struct numad_gate_entry *e = &ent[i];
        if (e->uid >= 0 && e->uid != uid)
            continue;
        if (!field_matches(e->comm, sizeof(e->comm), comm))
            continue;
        if (e->exe[0]) {
            if (exe_state == 0) {
                ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
                exe_state = n > 0 ? 1 : -1;
                exe[n > 0 ? n : 0] = '\0';
            }
            if (!field_matches(e->exe, sizeof(e->exe), exe_state > 0 ? exe : NULL))
                continue;
        }
        return 1;
    }
    return 0;
}

int numad_gate_admits(const char *rules_path)
{
    /* the largest valid gate, plus one byte to tell a larger file */
    union {
        struct numad_gate_header h;
        char bytes[GATE_MAX_BYTES + 1];
    } buf;
    char path[4096];
    size_t len = strlen(rules_path);
    if (len + sizeof(NUMAD_GATE_SUFFIX) > sizeof(path))
        return 1;
    memcpy(path, rules_path, len);
    memcpy(path + len, NUMAD_GATE_SUFFIX, sizeof(NUMAD_GATE_SUFFIX));

    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return 1;
    ssize_t size;
    do
        size = read(fd, buf.bytes, sizeof(buf.bytes));
    while (size < 0 && errno == EINTR);
    close(fd);
    if (size < (ssize_t)sizeof(struct numad_gate_header) || size > (ssize_t)GATE_MAX_BYTES)
        return 1;                              /* unreadable, short, or not a gate (too large) */
    const struct numad_gate_header *h = &buf.h;
    struct stat rs;
    int admits = 1;
    if (memcmp(h->magic, NUMAD_GATE_MAGIC, 8) == 0 && h->version == NUMAD_GATE_VERSION &&
        h->header_size == sizeof(*h) && h->entry_size == sizeof(struct numad_gate_entry) &&
        h->nr_entries <= NUMAD_RULES_MAX_RULES &&
        sizeof(*h) + (size_t)h->nr_entries * sizeof(struct numad_gate_entry) <= (size_t)size &&
        !(h->flags & NUMAD_GATE_PASS_ALL) &&
        stat(rules_path, &rs) == 0 && (uint64_t)rs.st_dev == h->rules_dev &&
        (uint64_t)rs.st_ino == h->rules_ino && (uint64_t)rs.st_size == h->rules_size &&
        (uint64_t)rs.st_mtim.tv_sec * 1000000000ULL + (uint64_t)rs.st_mtim.tv_nsec == h->rules_mtime_ns)
        admits = gate_matches(h, (const void *)(h + 1));
    return admits;
}
