"""cgroup v2 facts for a process: its path, and the memory nodes its cpuset allows.

Reads /sys/fs/cgroup (not /proc); the /proc/PID/cgroup parser is procfs's.
"""

from __future__ import annotations

from pathlib import Path

from ..nodes import NodeListError, parse_cpulist
from ..procfs import parse_proc_cgroup  # noqa: F401  (the one parser; imported from here by sense)

CGROUP_ROOT = "/sys/fs/cgroup"


def mems_allowed(cgroup: str | None, cgroup_root: str | Path = CGROUP_ROOT) -> frozenset[int] | None:
    """``cpuset.mems.effective`` of the cgroup, or of the nearest ancestor that has one.

    The file exists only where the cpuset controller is enabled; below that
    the parent's set applies.  None when no level has it (no cpuset, cgroup v1).
    """
    if cgroup is None:
        return None
    root = Path(cgroup_root)
    parts = [p for p in cgroup.split("/") if p]
    for depth in range(len(parts), -1, -1):
        try:
            text = (root.joinpath(*parts[:depth]) / "cpuset.mems.effective").read_text()
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        try:
            nodes = parse_cpulist(text)  # same grammar as a cpulist; "" = none set here
        except NodeListError:
            continue
        if nodes:
            return nodes
    return None
