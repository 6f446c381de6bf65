"""Who holds an address we could not bind: /proc/net/{tcp,tcp6,unix} plus each process's fds.

Only used on the failure path, to turn "address already in use" into a line
naming the holder.  Processes of other users whose fds we may not read are
skipped: the answer is then "unknown", never a guess.
"""

from __future__ import annotations

import os

from .. import procfs
from ..errors import NumaError

TCP_LISTEN = "0A"


def tcp_listeners(port: int, *, root: str = procfs.PROC) -> set[int]:
    """Socket inodes listening on ``port`` (IPv4 or IPv6, any local address)."""
    inodes: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            text = procfs.read_text("net", table, root=root)
        except NumaError:
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 10 or fields[3] != TCP_LISTEN:
                continue
            _addr, _, port_hex = fields[1].rpartition(":")
            if int(port_hex, 16) == port:
                inodes.add(int(fields[9]))
    return inodes


def unix_listeners(path: str, *, root: str = procfs.PROC) -> set[int]:
    """Socket inodes bound to ``path``, or to a temporary name the control server renames
    over it (``.NAME.PID`` in the same directory: /proc/net/unix keeps the bound name)."""
    directory, name = os.path.split(path)
    inodes: set[int] = set()
    try:
        text = procfs.read_text("net", "unix", root=root)
    except NumaError:
        return inodes
    for line in text.splitlines()[1:]:
        fields = line.split(None, 7)
        if len(fields) < 8:
            continue
        bound = fields[7].strip()
        bound_dir, bound_name = os.path.split(bound)
        if bound == path or (bound_dir == directory and bound_name.startswith(f".{name}.")):
            inodes.add(int(fields[6]))
    return inodes


def holders(inodes: set[int], *, root: str = procfs.PROC) -> list[str]:
    """``"pid 123 (comm)"`` for every process with one of the socket ``inodes`` open."""
    if not inodes:
        return []
    wanted = {f"socket:[{i}]" for i in inodes}
    found = []
    for pid in procfs.pids(root=root):
        try:
            numbers = procfs.fds(pid, root=root)
            if any(_link(pid, n, root) in wanted for n in numbers):
                comm = procfs.read_text(pid, "comm", root=root).strip()
                found.append(f"pid {pid} ({comm})")
        except NumaError:
            continue          # gone, or another user's process we may not look into
    return found


def _link(pid: int, fd: int, root: str) -> str:
    try:
        return procfs.readlink(pid, f"fd/{fd}", root=root)
    except NumaError:
        return ""


def describe(inodes: set[int]) -> str:
    """`` (held by pid 1 (x))``, or ``""`` when the holder cannot be found."""
    who = holders(inodes)
    return f" (held by {', '.join(who)})" if who else ""
