"""Kernel tests: they run inside a multi-node QEMU guest started by tests/vm/run.py.

* ``@pytest.mark.topology("two", "four")`` — the VM topologies a test needs;
  it is skipped in the others.  Unmarked tests run in every topology.
* ``@pytest.mark.kernel(">=6.9")`` — kernel releases the test needs (one or
  more of ``>= > <= < ==`` against major.minor[.patch] of ``uname -r``).
* ``@pytest.mark.kernel_feature("weighted_interleave")`` — runs only where
  the running kernel has every named feature; ``kernel_lacks(...)`` only
  where it has none of them (a test that expects "unsupported").  Features
  are probed in the guest (``KERNEL_FEATURES``); an unknown name is an error.
* ``@pytest.mark.kernel_independent`` — the test checks numad-py's own logic
  (daemon loop, control plane, metrics, the shim's ld.so.preload handling),
  which nothing that differs between the matrix's kernels touches: it runs on
  one kernel only, ``ONE_KERNEL`` (Debian 12's 6.1), so the matrix does not
  pay for it twice.  Placement itself (bindings, policies, the shim's
  fork-time placement, tiers) runs on every kernel.
  Skips from these say "needs VM topology/kernel": tests/vm/run.py
  counts them as "another kernel/topology", never as failures.
* On a machine without ``NUMAD_VM_TOPOLOGY`` (the host, one node) the whole
  directory is skipped with a reason that says how to run it.

Fixtures: ``vm_topology`` (its name), ``topo`` (numad_py.topology as sysfs
shows it), ``workload`` (start child processes from workload.py),
``as_nobody`` (run a Python snippet as uid/gid 65534), ``thp_enabled``.
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import operator
import os
import re
import select
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WORKLOAD = HERE / "workload.py"
VM_TOPOLOGY = os.environ.get("NUMAD_VM_TOPOLOGY", "")
TOPOLOGY_SKIP_PREFIX = "needs VM topology"  # tests/vm/run.py tells these skips from others
KERNEL_SKIP_PREFIX = "needs VM kernel"      # ... and these
VM_KERNEL_NAME = os.environ.get("NUMAD_VM_KERNEL_NAME", "")   # "6.1", "6.12" (tests/vm/run.py)
ONE_KERNEL = "6.1"                          # where kernel_independent tests run
NOBODY = 65534

# What tests/vm/run.py asked qemu for (nodes with memory size and cpus,
# distances): tests compare what the kernel shows against it.
VM_SPEC = json.loads(os.environ.get("NUMAD_VM_SPEC", "{}"))


def _in_this_dir(item) -> bool:
    try:
        Path(str(item.path)).resolve().relative_to(HERE)
        return True
    except ValueError:
        return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not _in_this_dir(item):
            continue
        if not VM_TOPOLOGY:
            item.add_marker(pytest.mark.skip(
                reason="kernel test: needs a multi-node VM (NUMAD_VM_TOPOLOGY unset); "
                       "run `python tests/vm/run.py` or `make test-vm`"))
            continue
        marker = item.get_closest_marker("topology")
        if marker is not None and VM_TOPOLOGY not in marker.args:
            item.add_marker(pytest.mark.skip(
                reason=f"{TOPOLOGY_SKIP_PREFIX} {'/'.join(marker.args)} (this VM is {VM_TOPOLOGY})"))
            continue
        reason = kernel_mismatch(item)
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"{KERNEL_SKIP_PREFIX} {reason}"))


# --- kernel markers --------------------------------------------------------

def _home_node_syscall() -> bool:
    """set_mempolicy_home_node(0, 0, 0, 0): 0 where it exists, ENOSYS where not (x86-64: 450)."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(450, 0, 0, 0, 0) == 0 or ctypes.get_errno() != errno.ENOSYS


# name -> how the running kernel shows it has the feature
KERNEL_FEATURES: dict[str, Callable[[], bool]] = {
    # MPOL_WEIGHTED_INTERLEAVE and its per-node weights (6.9)
    "weighted_interleave": lambda: Path("/sys/kernel/mm/mempolicy/weighted_interleave").is_dir(),
    # DAMON's sysfs interface (CONFIG_DAMON_SYSFS)
    "damon": lambda: Path("/sys/kernel/mm/damon/admin").is_dir(),
    # memory tiers (6.1); HMAT-driven tier placement needs a newer kernel, see kernel(">=6.7")
    "memory_tiers": lambda: Path("/sys/devices/virtual/memory_tiering").is_dir(),
    # /sys/kernel/mm/page_idle (CONFIG_IDLE_PAGE_TRACKING; Debian's 6.12 has none)
    "idle_page_tracking": lambda: Path("/sys/kernel/mm/page_idle/bitmap").exists(),
    "set_mempolicy_home_node": _home_node_syscall,
}
_OPS: dict[str, Callable[[tuple, tuple], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt,
}


def kernel_release() -> str:
    return os.uname().release


def release_tuple(release: str) -> tuple[int, ...]:
    """"6.12.117+deb12-amd64" -> (6, 12, 117); "6.1.0-57-amd64" -> (6, 1, 0)."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not m:
        raise ValueError(f"unparsable kernel release {release!r}")
    return tuple(int(g) for g in m.groups() if g is not None)


def kernel_satisfies(spec: str, release: str) -> bool:
    """``spec`` like ">=6.9" against ``release``, comparing as many parts as the spec names."""
    m = re.fullmatch(r"\s*(>=|<=|==|>|<)\s*(\d+(?:\.\d+){0,2})\s*", spec)
    if not m:
        raise pytest.UsageError(f"bad kernel marker {spec!r}: expected e.g. '>=6.9' or '<6.12'")
    want = tuple(int(x) for x in m.group(2).split("."))
    have = release_tuple(release)[:len(want)]
    return _OPS[m.group(1)](have, want)


_feature_cache: dict[str, bool] = {}


def kernel_has(name: str) -> bool:
    if name not in KERNEL_FEATURES:
        raise pytest.UsageError(f"unknown kernel feature {name!r} (known: {', '.join(sorted(KERNEL_FEATURES))})")
    if name not in _feature_cache:
        _feature_cache[name] = bool(KERNEL_FEATURES[name]())
    return _feature_cache[name]


def kernel_mismatch(item) -> str:
    """Why this kernel is the wrong one for ``item`` ("" when it is right)."""
    release = kernel_release()
    if item.get_closest_marker("kernel_independent") and VM_KERNEL_NAME and VM_KERNEL_NAME != ONE_KERNEL:
        return f"{ONE_KERNEL} (kernel-independent: it runs on one kernel; this VM runs {release})"
    for marker in item.iter_markers("kernel"):
        for spec in marker.args:
            if not kernel_satisfies(spec, release):
                return f"{spec} (this VM runs {release})"
    for marker in item.iter_markers("kernel_feature"):
        missing = [n for n in marker.args if not kernel_has(n)]
        if missing:
            return f"with {', '.join(missing)} ({release} lacks it)"
    for marker in item.iter_markers("kernel_lacks"):
        present = [n for n in marker.args if kernel_has(n)]
        if present:
            return f"without {', '.join(present)} ({release} has it)"
    return ""


# --- topology --------------------------------------------------------------

@pytest.fixture(scope="session")
def vm_topology() -> str:
    return VM_TOPOLOGY


@pytest.fixture(scope="session")
def topo():
    from numad_py.topology import read_topology
    return read_topology()


@pytest.fixture(scope="session")
def vm_spec() -> dict:
    """The topology tests/vm/run.py gave qemu: {"nodes": [{"mem", "cpus"}], "distances"?}."""
    if not VM_SPEC:
        pytest.fail("NUMAD_VM_SPEC is unset: run these tests through tests/vm/run.py")
    return VM_SPEC


# --- the child workload ----------------------------------------------------

class Child:
    """A running workload.py: its pid, its regions, and a command channel."""

    def __init__(self, argv: list[str], *, timeout: float = 120.0):
        self.argv = argv
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKLOAD), *argv],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=str(REPO),
        )
        self.info = self._read()
        if "error" in self.info:
            self.close()
            raise ChildError(self.info["error"], self.info["message"])
        self.pid: int = self.info["pid"]

    def _read(self) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            self.close()
            raise TimeoutError(f"workload {self.argv} answered nothing in {self.timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()
            raise RuntimeError(f"workload {self.argv} exited ({self.proc.wait()}): {err}")
        return json.loads(line)

    def cmd(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def checksum(self) -> dict:
        return self.cmd("checksum")

    def region(self, name: str = "anon") -> tuple[int, int]:
        r = self.info["regions"][name]
        return r["start"], r["end"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("exit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


class ChildError(Exception):
    """The workload refused to start (e.g. its set_mempolicy raised); .kind is the exception name."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@pytest.fixture
def workload():
    """``workload("--mib", "64", "--node", "0") -> Child``; all children end at teardown."""
    children: list[Child] = []

    def start(*argv: str) -> Child:
        child = Child([str(a) for a in argv])
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


# --- independent views of where pages are ----------------------------------

def numa_maps_of(pid: int, start: int) -> dict[int, int]:
    """Bytes per node of the mapping starting at ``start`` (/proc/PID/numa_maps, parsed here)."""
    text = Path(f"/proc/{pid}/numa_maps").read_text()
    for line in text.splitlines():
        addr, _, rest = line.partition(" ")
        if int(addr, 16) != start:
            continue
        page_kb = 4
        per_node: dict[int, int] = {}
        for field in rest.split():
            if field.startswith("kernelpagesize_kB="):
                page_kb = int(field.split("=")[1])
        for field in rest.split():
            if field[0] == "N" and "=" in field and field[1:].split("=")[0].isdigit():
                node, pages = field[1:].split("=")
                per_node[int(node)] = per_node.get(int(node), 0) + int(pages) * page_kb * 1024
        return per_node
    raise LookupError(f"no mapping at {start:#x} in /proc/{pid}/numa_maps")


def mapping_containing(pid: int, addr: int) -> int:
    """Start address of the /proc/PID/maps line that contains ``addr``."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= addr < hi:
            return lo
    raise LookupError(f"{addr:#x} is not mapped in {pid}")


def mappings_on_node0(count: int, size: int) -> tuple[list[mmap.mmap], list[int]]:
    """``count`` private anonymous mappings of ``size`` bytes in this process, every 4K page
    present on node 0: the buffers (keep them alive) and their addresses.  Bind and preferred
    policies alternate so the kernel does not merge neighbours into one mapping."""
    from numad_py import numa
    from numad_py.numa import Mode

    bufs = [mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) for _ in range(count)]
    addrs = [ctypes.addressof(ctypes.c_char.from_buffer(b)) for b in bufs]
    for i, (buf, addr) in enumerate(zip(bufs, addrs)):
        buf.madvise(mmap.MADV_NOHUGEPAGE)
        numa.mbind(addr, size, (Mode.BIND, Mode.PREFERRED)[i % 2], {0})
        for off in range(0, size, numa.PAGE_SIZE):
            buf[off] = 1
    return bufs, addrs


def smaps_field(pid: int, start: int, field: str) -> int:
    """A ``kB`` field (e.g. AnonHugePages) of the mapping starting at ``start``, in bytes."""
    current = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 1)[0] if line else ""
        if "-" in head and not head.endswith(":"):
            current = int(head.split("-")[0], 16)
        elif current == start and head == field + ":":
            return int(line.split()[1]) * 1024
    raise LookupError(f"no {field} for mapping {start:#x} of {pid}")


# --- another user ----------------------------------------------------------

def _reachable_interpreter(stack: list[str]) -> str:
    """A path to this interpreter that uid 65534 can exec.

    A checkout under /root (0700) is out of nobody's reach; tests/vm/run.py's
    guest script makes such ancestors traversable (chmod o+x, in the guest's
    overlay only), so here it is only checked.  ``stack`` (mount points to
    undo) stays for callers; nothing is mounted any more.
    """
    real = Path(os.path.realpath(sys.executable))
    for path in (real, Path(sys.executable), REPO):
        blocked = [p for p in path.parents if not p.stat().st_mode & stat.S_IXOTH]
        if blocked:
            pytest.fail(f"{blocked[-1]} is not traversable by other users, so nobody cannot reach {path}: "
                        "run through tests/vm/run.py, which opens it in the guest")
    return str(real)


@pytest.fixture(scope="session")
def as_nobody():
    """``as_nobody(code, *args) -> CompletedProcess``: ``python -c code`` as uid/gid 65534.

    Same interpreter as the tests, with the repo and the venv's site-packages
    on PYTHONPATH (``import numad_py`` works).
    """
    if os.geteuid() != 0:
        pytest.fail("as_nobody needs root to drop privileges (the VM runs tests as root)")
    mounts: list[str] = []
    python = _reachable_interpreter(mounts)
    site = sysconfig.get_paths()["purelib"]  # the venv's, since pytest runs in it

    def run(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONPATH=f"{REPO}:{site}", PYTHONDONTWRITEBYTECODE="1", HOME="/")
        return subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             python, "-c", code, *args],
            capture_output=True, text=True, timeout=timeout, env=env, cwd="/",
        )

    yield run
    for point in reversed(mounts):
        subprocess.run(["umount", point], check=False)


# --- transparent huge pages ------------------------------------------------

THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@pytest.fixture
def thp_enabled():
    """THP set to madvise or always for the test; the old setting is restored."""
    if not THP_ENABLED.exists():
        pytest.fail("kernel has no transparent hugepage support (CONFIG_TRANSPARENT_HUGEPAGE)")
    old = THP_ENABLED.read_text()
    current = old[old.index("[") + 1:old.index("]")]
    if current == "never":
        THP_ENABLED.write_text("madvise")
    yield
    if current == "never":
        THP_ENABLED.write_text("never")
