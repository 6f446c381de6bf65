#define _GNU_SOURCE
#include "proc_scan.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PF_KTHREAD 0x00200000UL
#define COMM_MAX ((int)sizeof(((struct nd_proc_stat *)0)->comm))

/* proc(5) numbers the fields from 1; field 3 (state) is the first after ")". */
enum { F_FLAGS = 9, F_THREADS = 20, F_STARTTIME = 22, F_RSS = 24 };

/* Parses one stat line (NUL-terminated) into REC; 0 on success, -1 when it is
 * not a stat line.  comm runs from the first " (" to the LAST ")": it may
 * hold spaces and parentheses itself. */
static int parse_stat_line(const char *line, struct nd_proc_stat *rec,
                           unsigned long *flags)
{
    const char *open = strstr(line, " (");
    const char *close = strrchr(line, ')');
    char *end;
    if (!open || !close || close < open + 1)
        return -1;
    long pid = strtol(line, &end, 10);
    if (end != open || pid <= 0)
        return -1;
    size_t len = (size_t)(close - (open + 2));
    if (len >= COMM_MAX)
        len = COMM_MAX - 1;
    memcpy(rec->comm, open + 2, len);
    rec->comm[len] = '\0';
    rec->pid = (int)pid;

    const char *p = close + 1;
    for (int field = 3; field <= F_RSS; field++) {
        while (*p == ' ')
            p++;
        if (*p == '\0' || *p == '\n')
            return -1;
        if (field == 3) {  /* state: one letter */
            while (*p && *p != ' ')
                p++;
            continue;
        }
        long long value = strtoll(p, &end, 10);
        if (end == p)
            return -1;
        p = end;
        switch (field) {
        case F_FLAGS: *flags = (unsigned long)value; break;
        case F_THREADS: rec->threads = (int)value; break;
        case F_STARTTIME: rec->starttime = (unsigned long long)value; break;
        case F_RSS: rec->rss_pages = (long)value; break;
        }
    }
    return 0;
}

static int all_digits(const char *name)
{
    if (!*name)
        return 0;
    for (; *name; name++)
        if (!isdigit((unsigned char)*name))
            return 0;
    return 1;
}

static int compare_comm(const void *key, const void *member)
{
    return strcmp((const char *)key, *(const char *const *)member);
}

/* True when PID's comm file (in ROOT_FD) names a comm in SKIP.  The file holds
 * the same bytes as stat's comm field (both unescaped, proc_task_name) and a
 * newline; a missing or over-long one leaves the decision to the stat line. */
static int comm_is_skipped(int root_fd, const char *pid, const char *const *skip, int nskip)
{
    char path[32];
    char comm[COMM_MAX + 1];
    snprintf(path, sizeof path, "%s/comm", pid);
    int fd = openat(root_fd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t got = read(fd, comm, sizeof comm - 1);
    close(fd);
    if (got <= 0 || comm[got - 1] != '\n')
        return 0;  /* unreadable, or longer than a record holds */
    comm[got - 1] = '\0';
    return bsearch(comm, skip, (size_t)nskip, sizeof *skip, compare_comm) != NULL;
}

int nd_scan_procs(const char *root, struct nd_proc_stat *out, int cap, int *more,
                  const char *const *skip, int nskip)
{
    DIR *dir = opendir(root);
    if (!dir)
        return -1;
    int root_fd = dirfd(dir);
    int n = 0;
    char path[32];
    char line[4096];
    struct dirent *entry;
    *more = 0;
    while ((entry = readdir(dir)) != NULL) {
        if (!all_digits(entry->d_name) || strlen(entry->d_name) > 20)
            continue;
        if (n == cap) {
            *more = 1;
            break;
        }
        if (nskip > 0 && comm_is_skipped(root_fd, entry->d_name, skip, nskip))
            continue;
        snprintf(path, sizeof path, "%s/stat", entry->d_name);
        int fd = openat(root_fd, path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;  /* gone, or not ours to read: nothing to judge */
        ssize_t got = read(fd, line, sizeof line - 1);
        close(fd);
        if (got <= 0)
            continue;
        line[got] = '\0';
        unsigned long flags = 0;
        if (parse_stat_line(line, &out[n], &flags) != 0)
            continue;
        out[n].kernel_thread = (flags & PF_KTHREAD) != 0;
        if (nskip > 0 && bsearch(out[n].comm, skip, (size_t)nskip, sizeof *skip, compare_comm))
            continue;
        n++;
    }
    closedir(dir);
    return n;
}
