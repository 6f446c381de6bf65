"""cffi builder (API mode) for numad_py._numa: one cdef, one set_source."""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

ffi = FFI()

# The C surface is the header, plus constants taken from the real kernel
# headers at build time (``...`` lets the compiler fill in the values).


def _header_declarations(name: str) -> str:
    """A header minus its preprocessor lines, which cdef does not take."""
    lines = (HERE / name).read_text().splitlines()
    return "\n".join(line for line in lines if not line.startswith("#"))


ffi.cdef(_header_declarations("numa_syscalls.h"))
ffi.cdef(_header_declarations("proc_scan.h"))
ffi.cdef("""
#define ND_MAX_ERRNO ...
#define MPOL_DEFAULT ...
#define MPOL_PREFERRED ...
#define MPOL_BIND ...
#define MPOL_INTERLEAVE ...
#define MPOL_LOCAL ...
#define MPOL_PREFERRED_MANY ...
#define MPOL_WEIGHTED_INTERLEAVE ...
#define MPOL_F_STATIC_NODES ...
#define MPOL_F_RELATIVE_NODES ...
#define MPOL_F_NODE ...
#define MPOL_F_ADDR ...
#define MPOL_F_MEMS_ALLOWED ...
#define MPOL_F_NUMA_BALANCING ...
#define MPOL_MF_STRICT ...
#define MPOL_MF_MOVE ...
#define MPOL_MF_MOVE_ALL ...

/* libnuma: only the topology queries it does well */
int numa_available(void);
int numa_max_node(void);
int numa_num_configured_nodes(void);
int numa_distance(int node1, int node2);
long long numa_node_size64(int node, long long *freep);
int numa_pagesize(void);

long sysconf(int name);
#define _SC_PAGESIZE ...
""")

ffi.set_source(
    "numad_py._numa",
    """
    #include <numa.h>
    #include <unistd.h>
    #include <linux/mempolicy.h>
    #include "numa_syscalls.h"
    #include "proc_scan.h"
    /* 6.1-era headers lack the modes of later kernels; the value is the
     * kernel ABI, support is probed at run time. */
    #ifndef MPOL_WEIGHTED_INTERLEAVE
    #define MPOL_WEIGHTED_INTERLEAVE 6
    #endif
    #ifndef MPOL_F_NUMA_BALANCING
    #define MPOL_F_NUMA_BALANCING (1 << 13)
    #endif
    #ifndef MPOL_PREFERRED_MANY
    #define MPOL_PREFERRED_MANY 5
    #endif
    """,
    # Relative to setup.py: setuptools refuses absolute source paths in its manifest.
    sources=["cext/numa_syscalls.c", "cext/proc_scan.c"],
    include_dirs=["cext"],
    libraries=["numa"],
    extra_compile_args=["-O2", "-Wall"],
)

if __name__ == "__main__":
    ffi.compile(verbose=True)
