"""A process's credentials, read as one consistent view: the control socket's authorization.

Read through :mod:`numad_py.procfs` (its one OSError map).  Apart from procfs
because a frozen dataclass imports ``dataclasses`` (and ``inspect``), which
the CLI's light commands that read /proc should not pay for.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from .. import procfs
from ..errors import NumaError, ProcessGone


@dataclass(frozen=True)
class Credentials:
    """One consistent view of a process: who it is and who it runs as.

    Read as stat, status, stat: if the start time changed in between, the pid
    was reused and the view is refused (ProcessGone), so an authorization check
    never joins one process's identity with another's owner.
    """

    pid: int
    start_time: float
    comm: str
    uids: tuple[int, int, int]      # real, effective, saved
    dumpable: bool                  # False after a setuid exec (non-dumpable)

    @property
    def real_and_effective(self) -> tuple[int, int]:
        return self.uids[0], self.uids[1]


def credentials(pid: int, *, root: str = procfs.PROC) -> Credentials:
    before = procfs.parse_stat(procfs.read_text(pid, "stat", root=root, limit=4096))
    if before["state"] in ("Z", "X"):
        raise ProcessGone(f"process {pid} is gone (zombie)", errno=errno.ESRCH)
    status = procfs.read_text(pid, "status", root=root)
    after = procfs.parse_stat(procfs.read_text(pid, "stat", root=root, limit=4096))
    if after["starttime"] != before["starttime"]:
        raise ProcessGone(f"process {pid} was replaced while being read", errno=errno.ESRCH)
    uid_line = procfs.parse_status_field(status, "Uid")
    if uid_line is None:
        raise NumaError(f"/proc/{pid}/status has no Uid line")
    real, effective, saved = (int(u) for u in uid_line.split()[:3])
    return Credentials(
        pid=pid,
        start_time=procfs.start_time_from_ticks(int(after["starttime"]), root=root),
        comm=str(after["comm"]),
        uids=(real, effective, saved),
        dumpable=_dumpable(pid, effective, root),
    )


def _dumpable(pid: int, effective_uid: int, root: str) -> bool:
    """/proc/PID is owned by the effective uid, or by root once the process is
    non-dumpable (a setuid exec; proc(5)): that owner is the flag."""
    with procfs.mapped(pid, ""):
        return os.stat(f"{root}/{pid}").st_uid == effective_uid
