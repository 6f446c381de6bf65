/*
 * numad-py shim: the rules file reader (format: numad_shim.h, docs/shim.md).
 *
 * Runs once, in the constructor, never on the fork path: it may use static
 * buffers and fnmatch(3).  The whole file is checked first (all or nothing:
 * dropping a line would change which rule matches first), then this
 * program is matched against the lines in order.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <string.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "numad_shim.h"
#include "shim_int.h"

static int is_one_of(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (!strcmp(s, *words))
            return 1;
    return 0;
}

static void ignore_id(int id, void *ctx)
{
    (void)id;
    (void)ctx;
}

/* Split at tabs in place; returns the number of fields. */
static int split_tabs(char *line, char **fields, int max)
{
    int n = 0;
    fields[n++] = line;
    for (char *p = line; *p; p++) {
        if (*p == '\t') {
            *p = '\0';
            if (n == max)
                return max + 1;
            fields[n++] = p + 1;
        }
    }
    return n;
}

/* 1 match, 0 no match.  An empty glob matches anything; fnmatch(3) without
 * flags: '*' and '?' cross '/', a backslash quotes the next character. */
static int glob_match(const char *glob, const char *subject)
{
    if (!*glob)
        return 1;
    return subject && fnmatch(glob, subject, 0) == 0;
}

static int read_bounded(const char *path, char *buf, size_t size)
{
    /* -1: cannot open/read; -2: larger than size-1 bytes */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    for (;;) {
        if (got == size - 1) {
            char extra;
            ssize_t n;
            do
                n = read(fd, &extra, 1);
            while (n < 0 && errno == EINTR);
            close(fd);
            buf[got] = '\0';
            return n > 0 ? -2 : (int)got;
        }
        ssize_t n = read(fd, buf + got, size - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return (int)got;
}

static const char *const ACTIONS[] = {"none", "fixed", "spread", "round-robin", "least-loaded", NULL};
static const char *const MODES[] = {"preferred", "bind", "interleave", "preferred-many", "preferred_many", NULL};

/* Returns the matching rule index, or RULE_* (<0). Fills *out on a match. */
int numad_rules_evaluate(const char *path, struct numad_rule *out, const char **table)
{
    static char text[NUMAD_RULES_MAX_BYTES + 1];
    static struct numad_rule rules[NUMAD_RULES_MAX_RULES];
    static char *includes[NUMAD_RULES_MAX_INCLUDES];
    int nrules = 0, nincl = 0;
    *table = NULL;

    int len = read_bounded(path, text, sizeof(text));
    if (len == -1)
        return RULE_NO_FILE;
    if (len < 0 || memchr(text, '\0', (size_t)len))
        return RULE_INVALID;

    /* Pass 1: syntax of the whole file (all or nothing). */
    char *line = text;
    int lineno = 0;
    while (*line) {
        char *nl = strchr(line, '\n');
        if (!nl)
            return RULE_INVALID;               /* truncated: last line unterminated */
        *nl = '\0';
        if (nl - line > NUMAD_RULES_MAX_LINE)
            return RULE_INVALID;
        char *next = nl + 1;
        if (lineno++ == 0) {
            if (strcmp(line, NUMAD_RULES_HEADER) != 0)
                return RULE_INVALID;
        } else if (*line && *line != '#') {
            char *f[10];
            int n = split_tabs(line, f, 10);
            if (!strcmp(f[0], "table") && n == 2 && f[1][0] == '/' && !*table) {
                *table = f[1];
            } else if (!strcmp(f[0], "include") && n == 2 && f[1][0]) {
                if (nincl == NUMAD_RULES_MAX_INCLUDES)
                    return RULE_INVALID;
                includes[nincl++] = f[1];
            } else if (!strcmp(f[0], "rule") && n == 9) {
                if (nrules == NUMAD_RULES_MAX_RULES)
                    return RULE_INVALID;
                struct numad_rule *r = &rules[nrules++];
                r->name = f[1];
                r->comm = f[2];
                r->exe = f[3];
                if (!strcmp(f[4], "-")) {
                    r->uid = -1;
                } else {
                    char *end;
                    if (f[4][0] < '0' || f[4][0] > '9')
                        return RULE_INVALID;
                    r->uid = strtol(f[4], &end, 10);
                    if (*end)
                        return RULE_INVALID;
                }
                r->action = f[5];
                r->nodes = f[6];
                r->mode = f[7];
                if (!is_one_of(r->action, ACTIONS) || !is_one_of(r->mode, MODES))
                    return RULE_INVALID;
                if (strcmp(r->action, "none") != 0 && strcmp(r->nodes, "all") != 0 &&
                    numad_parse_list(r->nodes, NODEMASK_BITS, ignore_id, NULL) < 0)
                    return RULE_INVALID;
                if (!strcmp(f[8], "0"))
                    r->pin = 0;
                else if (!strcmp(f[8], "1"))
                    r->pin = 1;
                else
                    return RULE_INVALID;
            } else {
                return RULE_INVALID;
            }
        }
        line = next;
    }
    if (lineno == 0)
        return RULE_INVALID;                   /* empty file: not even a header */

    /* Pass 2: this program against the list, first match wins. */
    char comm[17] = {0};
    if (prctl(PR_GET_NAME, comm, 0, 0, 0) != 0)
        return RULE_NO_MATCH;
    if (nincl) {
        int any = 0;
        for (int i = 0; i < nincl && !any; i++)
            any = glob_match(includes[i], comm);
        if (!any)
            return RULE_NOT_INCLUDED;
    }
    static char exe[4096];
    int exe_state = 0;                         /* 0 unread, 1 read, -1 unreadable */
    long uid = (long)getuid();
    for (int i = 0; i < nrules; i++) {
        struct numad_rule *r = &rules[i];
        if (r->uid >= 0 && r->uid != uid)
            continue;
        if (!glob_match(r->comm, comm))
            continue;
        if (*r->exe) {
            if (exe_state == 0) {
                ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
                exe_state = n > 0 ? 1 : -1;
                exe[n > 0 ? n : 0] = '\0';
            }
            if (!glob_match(r->exe, exe_state > 0 ? exe : NULL))
                continue;
        }
        *out = *r;
        return i;
    }
    return RULE_NO_MATCH;
}

