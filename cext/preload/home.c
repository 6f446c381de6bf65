/*
 * numad-py shim: the home node (NUMAD_SHIM_HOME_NODE).
 *
 * Linux takes a home node only for address ranges
 * (set_mempolicy_home_node(2), 5.17+), never for a task, so a policy of
 * "bind 0-1 home-node 1" cannot be inherited as such.  Instead, while this
 * is configured, every anonymous mmap() that succeeds gets the task's
 * policy (bind or preferred-many, read with get_mempolicy) as its range
 * policy, then the home node.  Memory glibc maps internally (malloc's own
 * mmap calls do not go through this symbol) follows the task policy alone.
 * Any failure leaves the mapping as the kernel made it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "shim_int.h"

#define VISIBLE __attribute__((visibility("default")))
#define LONG_BITS (8 * (int)sizeof(unsigned long))
#define MAXNODE_ARG (NODEMASK_BITS + 1)
#ifndef SYS_set_mempolicy_home_node
#define SYS_set_mempolicy_home_node 450    /* x86_64, aarch64 */
#endif
#define MODE_MASK 0xff                      /* get_mempolicy also reports mode flags */

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);

static long g_home = -1;                    /* -1: off */
static mmap_fn real_mmap, real_mmap64;

void numad_home_configure(const char *node)
{
    char *end;
    long n = strtol(node, &end, 10);
    if (*end || n < 0 || n >= NODEMASK_BITS)
        return;                             /* exec validated it; a hand-set bad value is ignored */
    g_home = n;
}

static void apply_home(void *addr, size_t len);

static void give_home(void *addr, size_t len, int flags)
{
    if (g_home < 0 || addr == MAP_FAILED || !(flags & MAP_ANONYMOUS) || len == 0)
        return;
    int saved = errno;
    apply_home(addr, len);
    errno = saved;
}

static void apply_home(void *addr, size_t len)
{
    int mode;
    unsigned long mask[NODEMASK_BITS / LONG_BITS] = {0};
    if (syscall(SYS_get_mempolicy, &mode, mask, MAXNODE_ARG, NULL, 0) < 0)
        return;
    int base = mode & MODE_MASK;
    if (base != 2 /* MPOL_BIND */ && base != 5 /* MPOL_PREFERRED_MANY */)
        return;
    if (syscall(SYS_mbind, addr, len, mode, mask, MAXNODE_ARG, 0) < 0)
        return;
    syscall(SYS_set_mempolicy_home_node, (unsigned long)addr, len, g_home, 0);
}

VISIBLE void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (!real_mmap)                         /* once; idempotent if two threads race */
        real_mmap = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
    void *p = real_mmap(addr, len, prot, flags, fd, off);
    give_home(p, len, flags);
    return p;
}

VISIBLE void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (!real_mmap64)
        real_mmap64 = (mmap_fn)dlsym(RTLD_NEXT, "mmap64");
    void *p = real_mmap64(addr, len, prot, flags, fd, off);
    give_home(p, len, flags);
    return p;
}
