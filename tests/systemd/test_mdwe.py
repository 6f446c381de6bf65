"""MemoryDenyWriteExecute=yes in the unit: importing every numad_py module (the cffi extension,
pydantic-core, psutil, prometheus-client) must not need writable+executable memory.

The kernel's own W^X switch (prctl PR_SET_MDWE, Linux >= 6.3) is as strict as systemd's seccomp
filter for mmap/mprotect: a child turns it on, then imports; the set of modules that fail to import
must be the same with and without it (so a module broken for other reasons doesn't fail this test).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import ctypes, importlib, json, mmap, pkgutil, sys
if sys.argv[1] == "mdwe":
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:          # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        print(json.dumps({"unsupported": ctypes.get_errno()})); sys.exit(0)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        print(json.dumps({"unsupported": "W+X mmap still allowed"})); sys.exit(0)
    except OSError:
        pass
import numad_py
failed = {}
for mod in pkgutil.walk_packages(numad_py.__path__, "numad_py."):
    try:
        importlib.import_module(mod.name)
    except BaseException as exc:
        failed[mod.name] = f"{type(exc).__name__}: {exc}"
from numad_py import metrics
metrics.Metrics().exposition()
print(json.dumps({"failed": failed}))
"""


def run(mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_imports_work_under_write_xor_execute():
    under = run("mdwe")
    if "unsupported" in under:
        pytest.skip(f"kernel has no usable PR_SET_MDWE ({under['unsupported']}); needs Linux >= 6.3")
    plain = run("plain")
    assert set(under["failed"]) == set(plain["failed"]), {
        name: err for name, err in under["failed"].items() if name not in plain["failed"]}
