/* One pass over /proc in C: the per-process stat facts the daemon's scan needs.
 *
 * The scan reads every process's stat line on every tick; in Python that
 * loop cost several times numad's C loop for the same reads. */
#ifndef NUMAD_PROC_SCAN_H
#define NUMAD_PROC_SCAN_H

struct nd_proc_stat {
    int pid;
    int threads;
    unsigned long long starttime;  /* clock ticks after boot */
    long rss_pages;
    int kernel_thread;  /* PF_KTHREAD: never a candidate, but its comm may join SKIP */
    char comm[64];  /* stat's comm is at most 15 bytes for a user task; longer is cut */
};

/* Fills OUT with up to CAP records, one per numeric entry of ROOT (a /proc)
 * whose stat line parses (kernel threads flagged); entries that vanish or
 * cannot be read are skipped, and so are those whose comm is one of the
 * NSKIP strings in SKIP (sorted by strcmp).  With a skip list, each entry's
 * comm file is read first and a skipped one's stat never is: reading comm
 * costs about two thirds of reading stat, and on an idle machine nearly
 * every process is skipped.  Returns the number written, or -1 with errno
 * when ROOT cannot be opened.  *MORE is set to 1 when records were left out
 * for lack of room (call again with a larger CAP), else 0. */
int nd_scan_procs(const char *root, struct nd_proc_stat *out, int cap, int *more,
                  const char *const *skip, int nskip);

#endif
