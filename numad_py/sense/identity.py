"""A process is ``(pid, start_time)``: the pair survives pid reuse."""

from __future__ import annotations

import errno

import psutil

from ..errors import ProcessGone


def start_time_of(pid: int) -> float:
    """psutil's create_time, the same number the snapshot records."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:  # ZombieProcess included: its memory is gone
        raise ProcessGone(f"process {pid} is gone", errno=errno.ESRCH) from None
