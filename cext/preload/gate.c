/*
 * numad-py shim: the gate (format: numad_shim.h 2b, written by
 * numad_py/shim/gate.py next to the rules file).
 *
 * System-wide (/etc/ld.so.preload) the shim loads into every process, and
 * almost none of them is named by a rule.  For those the constructor must
 * not read and parse the rules text: the daemon publishes the placing lines
 * precompiled into fixed fields, and this file decides from them with one
 * open + read + close of the gate and one stat of the rules file (which
 * proves the gate describes the rules file now at the path).
 *
 * What an unmatched process pays here is mostly page faults and first
 * calls, not the syscalls: the gate is read in small chunks into a stack
 * buffer that stays within the stack ld.so has already touched (a 16 KiB
 * buffer took 3 stack faults per exec), and the exe buffer is static,
 * touched only for an exe glob.  No libc function is called on the way to
 * "no line matches" (raw syscalls, shim_int.h's string helpers: each first
 * call is a lazy binding); the uid is asked for only when a line names a
 * user, fnmatch(3) only for a real glob.  Nothing is allocated; fnmatch runs
 * in the C locale of a constructor and allocates nothing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "numad_shim.h"
#include "shim_int.h"

/* A rule line's match, as rules.c glob_match: "" matches anything. */
static int field_matches(const char *glob, size_t size, const char *subject)
{
    if (!has_byte(glob, size, '\0'))
        return 1;                              /* unterminated: cannot tell, let the text decide */
    if (!*glob)
        return 1;
    if (!subject)
        return 0;
    if (!has_any_of(glob, "*?[\\"))            /* a plain name, as most comms are: fnmatch would */
        return same_text(glob, subject);        /* say the same, at the cost of its first call */
    return fnmatch(glob, subject, 0) == 0;
}

/* Constructor only (one thread, once): a static buffer, so that an exe
 * glob costs the stack nothing. */
static char exe_buf[4096];

struct subject {
    char comm[17];
    long uid;                                  /* -1 until a line names a user */
    int exe_state;                             /* 0 unread, 1 read, -1 unreadable */
};

static int entry_matches(struct subject *who, const struct numad_gate_entry *e)
{
    if (e->uid >= 0) {
        if (who->uid < 0)
            who->uid = (long)getuid();
        if (e->uid != who->uid)
            return 0;
    }
    if (!field_matches(e->comm, sizeof(e->comm), who->comm))
        return 0;
    if (e->exe[0]) {
        if (who->exe_state == 0) {
            ssize_t n = readlink("/proc/self/exe", exe_buf, sizeof(exe_buf) - 1);
            who->exe_state = n > 0 ? 1 : -1;
            exe_buf[n > 0 ? n : 0] = '\0';
        }
        if (!field_matches(e->exe, sizeof(e->exe), who->exe_state > 0 ? exe_buf : NULL))
            return 0;
    }
    return 1;
}

/* One read(2): a regular file gives all it has up to size, so a short
 * count means the end of the file. */
static ssize_t read_once(int fd, void *buf, size_t size)
{
    long n;
    do
        n = rsys(SYS_read, fd, (long)buf, (long)size, 0, 0);
    while (n == -EINTR);
    return n;
}

/* stat(2) of the rules file.  x86-64's struct stat is the kernel's, so the raw
 * call fills it as libc would; elsewhere libc's stat. */
static int stat_rules(const char *path, struct stat *st)
{
#if defined(__x86_64__)
    return rsys(SYS_newfstatat, AT_FDCWD, (long)path, (long)st, 0, 0) == 0 ? 0 : -1;
#else
    return stat(path, st);
#endif
}

static int header_valid(const struct numad_gate_header *h, const char *rules_path)
{
    struct stat rs;
    return same_bytes(h->magic, NUMAD_GATE_MAGIC, 8) && h->version == NUMAD_GATE_VERSION &&
           h->header_size == sizeof(*h) && h->entry_size == sizeof(struct numad_gate_entry) &&
           h->nr_entries <= NUMAD_RULES_MAX_RULES && !(h->flags & NUMAD_GATE_PASS_ALL) &&
           stat_rules(rules_path, &rs) == 0 && (uint64_t)rs.st_dev == h->rules_dev &&
           (uint64_t)rs.st_ino == h->rules_ino && (uint64_t)rs.st_size == h->rules_size &&
           (uint64_t)rs.st_mtim.tv_sec * 1000000000ULL + (uint64_t)rs.st_mtim.tv_nsec ==
               h->rules_mtime_ns;
}

#define GATE_CHUNK 4                           /* entries per read: ~1 KiB of stack */

int numad_gate_admits(const char *rules_path)
{
    char path[512];
    size_t len = text_length(rules_path);
    if (len + sizeof(NUMAD_GATE_SUFFIX) > sizeof(path))
        return 1;                              /* a path this long: let the text decide */
    for (size_t i = 0; i < len; i++)
        path[i] = rules_path[i];
    for (size_t i = 0; i < sizeof(NUMAD_GATE_SUFFIX); i++)
        path[len + i] = NUMAD_GATE_SUFFIX[i];

    long opened = rsys(SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0, 0);
    if (opened < 0)
        return 1;
    int fd = (int)opened;
    struct {
        struct numad_gate_header h;
        struct numad_gate_entry e[GATE_CHUNK];
    } buf;
    const size_t entry = sizeof(buf.e[0]);
    int admits = 1;
    ssize_t got = read_once(fd, &buf, sizeof(buf));  /* the header and the first entries */
    if (got < (ssize_t)sizeof(buf.h) || !header_valid(&buf.h, rules_path))
        goto out;                              /* unreadable, short, or not this rules file's gate */
    struct subject who = {.uid = -1};
    if (rsys(SYS_prctl, PR_GET_NAME, (long)who.comm, 0, 0, 0) != 0)
        goto out;
    uint32_t left = buf.h.nr_entries;
    size_t have = ((size_t)got - sizeof(buf.h)) / entry;
    admits = 0;
    while (left && !admits) {
        if (!have) {                           /* the next chunk */
            got = read_once(fd, buf.e, sizeof(buf.e));
            have = got > 0 ? (size_t)got / entry : 0;
            if (!have) {
                admits = 1;                    /* fewer entries than the header says */
                break;
            }
        }
        size_t n = have < left ? have : left;
        for (size_t i = 0; i < n && !admits; i++)
            admits = entry_matches(&who, &buf.e[i]);
        left -= (uint32_t)n;
        have = 0;
    }
out:
    rsys(SYS_close, fd, 0, 0, 0, 0);
    return admits;
}
