/*
 * numad-py shim: opening the shared stats file (NUMAD_SHIM_STATS) safely.
 *
 * The file is written with the privileges of whatever program loaded the
 * shim, so a path someone else prepared must not make it write elsewhere
 * (issue: a setuid program created and rewrote root files through it).  The
 * constructor never calls this under AT_SECURE (no variable is read there).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "numad_shim.h"
#include "shim_int.h"

/* The stats file is shared by a process tree, so it may exist already.  It
 * is used only if it is a regular file of ours with one link, empty or of
 * the stats size, in a directory nobody else can swap names in (owned by us
 * or root, not group/other-writable unless sticky, not reached through a
 * symlink of another user).  The last component is
 * never followed if it is a symlink; a new file is created O_EXCL.
 * Anything else: no stats file (the counters stay per process). */
int numad_stats_open_fd(const char *path)
{
    char dir[512];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    if (!*base || dlen >= sizeof(dir))
        return -1;
    if (!slash)
        strcpy(dir, ".");
    else if (dlen == 0)
        strcpy(dir, "/");
    else {
        memcpy(dir, path, dlen);
        dir[dlen] = '\0';
    }
    uid_t me = geteuid();
    struct stat st;
    /* a symlinked directory only if the link is ours or root's (not one planted in /tmp) */
    if (lstat(dir, &st) != 0 || (S_ISLNK(st.st_mode) && st.st_uid != me && st.st_uid != 0))
        return -1;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    if (fstat(dfd, &st) != 0 || (st.st_uid != me && st.st_uid != 0) ||
        ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))) {
        close(dfd);
        return -1;
    }
    const int flags = O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    int fd = openat(dfd, base, flags);
    if (fd < 0 && errno == ENOENT) {
        fd = openat(dfd, base, flags | O_CREAT | O_EXCL, 0644);
        if (fd < 0 && errno == EEXIST)        /* another process of the tree was first */
            fd = openat(dfd, base, flags);
    }
    close(dfd);
    if (fd < 0)
        return -1;
    char magic[8] = {0};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != me || st.st_nlink != 1 ||
        (st.st_size != 0 && st.st_size != (off_t)sizeof(struct numad_shim_stats)) ||
        (st.st_size != 0 && (pread(fd, magic, 8, 0) != 8 ||
                             (memcmp(magic, NUMAD_STATS_MAGIC, 8) != 0 &&
                              memcmp(magic, "\0\0\0\0\0\0\0\0", 8) != 0)))) {
        close(fd);
        return -1;
    }
    return fd;
}

