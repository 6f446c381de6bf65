"""Build what pyproject.toml cannot say: the cffi binding and the LD_PRELOAD shim.

Metadata lives in pyproject.toml (PEP 621).  The shim is a plain C shared
library that never calls into Python, so it is not a Python extension: the
``build_ext`` step below compiles ``cext/preload/*.c`` with the system C
compiler into ``numad_py/libnumad_shim.so`` (next to the package in place for
``pip install -e .``, in build/lib for a wheel); ``numad-py shim-path``
finds it there.
"""

from __future__ import annotations

from glob import glob
import os
import shlex
import subprocess
import sysconfig

from setuptools import setup
from setuptools.command.build_ext import build_ext

SHIM_SOURCES = sorted(glob("cext/preload/*.c"))
SHIM_HEADERS = sorted(glob("cext/preload/*.h"))
SHIM_NAME = "libnumad_shim.so"     # numad_py/shim/locate.py LIBRARY_NAME
# No libnuma, no libpython: raw syscalls only on the fork path.
# -z noseparate-code: system-wide the shim is mapped into every process, and
# two load segments (code with read-only data, then data) instead of four
# take 25 us off each exec of /bin/true on the bench host (1.22 -> 1.18 x an
# exec without the shim; bench/bench_system_shim.py).  What it gives up: the
# ELF headers and read-only data are mapped executable too, as in every
# x86-64 library linked before binutils 2.31.
# -fno-tree-loop-distribute-patterns: the copy and compare loops of the paths that must call
# no libc function (cext/preload/shim_int.h) would otherwise become memcpy and strlen calls.
SHIM_CFLAGS = ["-O2", "-Wall", "-fPIC", "-shared", "-fvisibility=hidden", "-Icext/preload",
               "-Wl,-z,noseparate-code", "-fno-tree-loop-distribute-patterns"]
SHIM_LIBS = ["-ldl"]


class build_ext_with_shim(build_ext):
    """build_ext (the cffi module) plus the shim as a plain shared library."""

    def _shim_target(self) -> str:
        base = "" if self.inplace else self.build_lib
        return os.path.join(base, "numad_py", SHIM_NAME)

    def run(self) -> None:
        super().run()
        target = self._shim_target()
        if not self.force and os.path.exists(target) and all(
                os.path.getmtime(src) <= os.path.getmtime(target) for src in [*SHIM_SOURCES, *SHIM_HEADERS, __file__]):
            return
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
        cmd = [*cc, *SHIM_CFLAGS, "-o", target, *SHIM_SOURCES, *SHIM_LIBS]
        self.announce(" ".join(cmd), level=2)
        subprocess.run(cmd, check=True)

    def get_outputs(self) -> list[str]:
        return [*super().get_outputs(), self._shim_target()]


setup(
    cffi_modules=["cext/numa_build.py:ffi"],
    cmdclass={"build_ext": build_ext_with_shim},
    # The cffi module is built for the stable ABI (_numa.abi3.so) and the shim
    # uses no Python at all: one wheel serves CPython 3.11 and later.
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
