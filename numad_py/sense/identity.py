"""A process is ``(pid, start_time)``: the pair survives pid reuse.

Kept as a name for the modules that import it from here; the one
implementation is :func:`numad_py.procfs.start_time` (the same formula the
scan uses, so a snapshot and a re-check agree exactly).
"""

from __future__ import annotations

from .. import procfs


def start_time_of(pid: int) -> float:
    """Seconds since the epoch when ``pid`` started; ProcessGone for an exited or zombie process."""
    return procfs.start_time(pid)
