"""The ONE reader of /proc: raw reads behind one OSError -> exception map.

Every module that reads a process's files goes through here, so a process
that vanishes mid-read is always :class:`ProcessGone` and a file we may not
read is always :class:`PermissionDenied` (psutil's habit: one decorator, one
meaning).  The one exception is the scan's pass over every process's stat
line, which runs in C (:mod:`numad_py.procscan`).  The root is injectable
(``root=``) so tests can point at a fake tree.

A process is ``(pid, start_time)``; :func:`start_time` uses psutil's formula
(boot time + starttime / CLK_TCK), so ``psutil.Process(pid).create_time()``
and every snapshot agree on the same float.
"""

from __future__ import annotations

import errno
import os

from .errors import CAPABILITY_FOR, NumaError, PermissionDenied, ProcessGone
from .nodes import NodeListError, parse_cpulist

# No contextlib, functools, dataclasses or selectors at import: `numad-py show` reads
# numa_maps through here, and each costs milliseconds of its start-up (issue 17).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from .selectors import Mapping

PROC = "/proc"
PF_KTHREAD = 0x00200000  # task flag of kernel threads: no user memory, never candidates
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_GONE = (errno.ENOENT, errno.ESRCH)
_DENIED = (errno.EACCES, errno.EPERM)


class mapped:
    """``with mapped(pid, what):`` turns an OSError reading ``/proc/PID/what`` into the
    exception it means."""

    def __init__(self, pid: int, what: str) -> None:
        self.pid, self.what = pid, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if isinstance(exc, OSError):
            raise self.meaning(exc) from None

    def meaning(self, exc: OSError) -> NumaError:
        if exc.errno in _GONE:
            return ProcessGone(f"process {self.pid} is gone", errno=errno.ESRCH)
        if exc.errno in _DENIED:
            return PermissionDenied(f"reading /proc/{self.pid}/{self.what}",
                                    capability=CAPABILITY_FOR["read_maps"], errno=exc.errno)
        return NumaError(f"reading /proc/{self.pid}/{self.what}: {exc.strerror}", errno=exc.errno)


def read_bytes(pid: int | str, name: str, *, root: str = PROC, limit: int | None = None) -> bytes:
    """The whole file (or its first ``limit`` bytes, in one read(2))."""
    path = f"{root}/{pid}/{name}"
    with mapped(int(pid) if str(pid).isascii() and str(pid).isdigit() else 0, name):
        if limit is not None:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                return os.read(fd, limit)
            finally:
                os.close(fd)
        with open(path, "rb") as f:
            return f.read()


def read_text(pid: int | str, name: str, *, root: str = PROC, limit: int | None = None) -> str:
    return read_bytes(pid, name, root=root, limit=limit).decode(errors="replace")


def readlink(pid: int, name: str, *, root: str = PROC) -> str:
    with mapped(pid, name):
        return os.readlink(f"{root}/{pid}/{name}")


def pids(*, root: str = PROC) -> list[int]:
    """Every numeric entry of ``root`` (processes, not threads)."""
    return [int(name) for name in os.listdir(root) if name.isascii() and name.isdigit()]


def tasks(pid: int, *, root: str = PROC) -> list[int]:
    with mapped(pid, "task"):
        return [int(t) for t in os.listdir(f"{root}/{pid}/task")]


def fds(pid: int, *, root: str = PROC) -> list[int]:
    """The open file descriptor numbers of ``pid``; read each with ``readlink(pid, f"fd/{n}")``."""
    with mapped(pid, "fd"):
        return [int(n) for n in os.listdir(f"{root}/{pid}/fd") if n.isdigit()]


# --- parsers (pure) -----------------------------------------------------------

def parse_stat(text: str) -> dict[str, int | str]:
    """The fields numad-py uses from /proc/PID/stat; comm may hold spaces and parentheses."""
    head, _, rest = text.rpartition(")")
    pid_text, _, comm = head.partition(" (")
    fields = rest.split()
    # fields[0] is field 3 (state) of proc(5); field N is fields[N - 3].
    return {
        "pid": int(pid_text),
        "comm": comm,
        "state": fields[0],
        "flags": int(fields[6]),
        "threads": int(fields[17]),
        "starttime": int(fields[19]),
        "rss_pages": int(fields[21]),
    }


def parse_status_field(text: str, name: str) -> str | None:
    prefix = name + ":"
    for line in text.splitlines():
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    return None


def parse_status_fields(text: str, names: Iterable[str]) -> dict[str, str]:
    """The fields ``names`` of a status file that are present, in one pass over its lines."""
    wanted = {name + ":": name for name in names}
    found: dict[str, str] = {}
    for line in text.splitlines():
        name = wanted.get(line[:line.find(":") + 1])
        if name is not None:
            found[name] = line[len(name) + 1:].strip()
            if len(found) == len(wanted):
                break
    return found


def parse_status_list(text: str, name: str) -> frozenset[int] | None:
    """A list field of a status file (``Cpus_allowed_list``, ``Mems_allowed_list``); None
    when absent or unparsable."""
    return parse_list(parse_status_field(text, name))


def parse_list(listed: str | None) -> frozenset[int] | None:
    """A status file's list field's value (``0-3,8``); None when absent or unparsable."""
    try:
        return None if listed is None else parse_cpulist(listed)
    except NodeListError:
        return None


def parse_cpu_times(proc_stat: str) -> dict[int, tuple[int, int]]:
    """Per CPU: (busy ticks, total ticks) from the ``cpuN`` lines; idle and iowait are not busy."""
    out = {}
    for line in proc_stat.splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *values = line.split()
            ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            total = sum(ticks)
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
            out[int(name[3:])] = (total - idle, total)
    return out


def parse_boot_time(proc_stat: str) -> float:
    for line in proc_stat.splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise NumaError("no btime line in /proc/stat")


_BOOT_TIMES: dict[str, float] = {}    # per root: it never changes while the machine runs


def boot_time(root: str = PROC) -> float:
    if root not in _BOOT_TIMES:
        if len(_BOOT_TIMES) >= 4:       # tests pass fake roots; the daemon has one
            _BOOT_TIMES.clear()
        with open(f"{root}/stat") as f:
            _BOOT_TIMES[root] = parse_boot_time(f.read())
    return _BOOT_TIMES[root]


def start_time_from_ticks(ticks: int, *, root: str = PROC) -> float:
    return boot_time(root) + ticks / CLOCK_TICKS


def start_time(pid: int, *, root: str = PROC) -> float:
    """Seconds since the epoch, as psutil's ``create_time()``; ProcessGone for a zombie."""
    stat = parse_stat(read_text(pid, "stat", root=root, limit=4096))
    if stat["state"] in ("Z", "X"):  # a zombie's memory is gone: nothing to act on
        raise ProcessGone(f"process {pid} is gone (zombie)", errno=errno.ESRCH)
    return start_time_from_ticks(int(stat["starttime"]), root=root)


# --- system-wide files and address spaces (added for sense/ and numa) ----------

def read_system(name: str, *, root: str = PROC) -> str:
    """A file of /proc itself (``stat``, ``sys/kernel/numa_balancing``): NumaError if unreadable."""
    try:
        return _read_all(f"{root}/{name}").decode(errors="replace")
    except OSError as exc:
        raise NumaError(f"reading {root}/{name}: {exc.strerror}", errno=exc.errno) from None


def _read_all(path: str) -> bytes:
    """A file's bytes through os.read: a buffered file object costs more than the read itself
    for the small files the daemon reads every tick (/proc/stat, vmstat, a sysctl)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def maps(pid: int, *, root: str = PROC) -> list[Mapping]:
    """The mappings of /proc/PID/maps (ptrace read access needed)."""
    from .selectors import parse_maps
    return parse_maps(read_text(pid, "maps", root=root))


def mems_allowed(pid: int, *, root: str = PROC) -> frozenset[int] | None:
    """The nodes the process may use (``Mems_allowed_list``: its cpuset's ``mems.effective``)."""
    return parse_status_list(read_text(pid, "status", root=root), "Mems_allowed_list")


def parse_proc_cgroup(text: str) -> str | None:
    """The v2 path from /proc/PID/cgroup (the ``0::/path`` line); None on a v1-only system."""
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or "/"
    return None


def cgroup_path(pid: int, *, root: str = PROC) -> str | None:
    return parse_proc_cgroup(read_text(pid, "cgroup", root=root))


def parse_smaps_huge(text: str) -> dict[int, int]:
    """AnonHugePages bytes per mapping start address, from /proc/PID/smaps."""
    out: dict[int, int] = {}
    current = None
    for line in text.splitlines():
        head = line.split(None, 1)[0] if line else ""
        if "-" in head and not head.endswith(":"):
            lo = head.split("-")[0]
            current = int(lo, 16) if lo and all(c in "0123456789abcdefABCDEF" for c in lo) else None
        elif head == "AnonHugePages:" and current is not None:
            out[current] = int(line.split()[1]) * 1024
    return out


def anon_huge_bytes(pid: int, *, root: str = PROC) -> dict[int, int]:
    """Transparent huge page bytes per mapping start (ptrace read access needed)."""
    return parse_smaps_huge(read_text(pid, "smaps", root=root))


def address_space_released(pid: int, *, root: str = PROC) -> bool:
    """True for a user process that is gone or has already dropped its memory on exit.

    Used when move_pages/migrate_pages fail EINVAL: the kernel found the task
    but no mm, so it is exiting.  A kernel thread never had user memory.
    """
    try:
        stat = parse_stat(read_text(pid, "stat", root=root, limit=4096))
        if int(stat["flags"]) & PF_KTHREAD:
            return False
        return not read_bytes(pid, "maps", root=root, limit=1)
    except ProcessGone:
        return True
    except (NumaError, ValueError, IndexError):
        return False
