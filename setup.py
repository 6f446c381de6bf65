"""Build numad_py: the cffi binding (numad_py._numa) and the LD_PRELOAD shim.

The shim is a plain C shared library, not a Python module: it is built as
an Extension only to reuse setuptools' compiler setup, and it never calls
into Python.  ``numad-py shim-path`` finds it next to the package.
"""

from glob import glob

from setuptools import Extension, find_packages, setup

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

setup(
    name="numad-py",
    version="0.1.0",
    description="NUMA placement daemon: policy rules, fork-time placement, rate-limited migration",
    packages=find_packages(include=["numad_py", "numad_py.*"]),
    python_requires=">=3.11",
    setup_requires=["cffi>=1.15"],
    cffi_modules=["cext/numa_build.py:ffi"],
    ext_modules=ext_modules,
    install_requires=[
        "cffi>=1.15",
        "pydantic>=2.5",
        "psutil>=5.9",
        "python-daemon>=3.0",
        "prometheus-client>=0.17",
    ],
    extras_require={"test": ["pytest>=7", "hypothesis>=6"]},
    entry_points={"console_scripts": ["numad-py = numad_py.cli:main"]},
    package_data={"numad_py": ["py.typed"]},
)
