"""Build numad_py: the cffi binding (numad_py._numa) and the LD_PRELOAD shim.

The shim is a plain C shared library, not a Python module: it is built as
an Extension only to reuse setuptools' compiler setup, and it never calls
into Python.  ``numad-py shim-path`` finds it next to the package.
"""

from glob import glob

from setuptools import Extension, setup

preload_sources = sorted(glob("cext/preload/*.c"))
ext_modules = []
if preload_sources:
    ext_modules.append(
        Extension(
            "numad_py._preload",
            sources=preload_sources,
            include_dirs=["cext/preload"],
            # No libnuma, no libpython: raw syscalls only on the fork path.
            extra_compile_args=["-O2", "-Wall", "-fvisibility=hidden"],
            extra_link_args=["-ldl"],
        )
    )

# Metadata lives in pyproject.toml (PEP 621); only the compiled parts are here.
setup(
    cffi_modules=["cext/numa_build.py:ffi"],
    ext_modules=ext_modules,
)
