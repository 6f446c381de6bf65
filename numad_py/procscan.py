"""Every user process's stat line in one pass, in C (cext/proc_scan.c).

The daemon reads each process's ``/proc/PID/stat`` on every tick.  In
Python that loop cost several times numad's C loop for the same reads, so
this one pass runs in the binding; everything else about a process is read
through :mod:`numad_py.procfs`.  A separate module so that importing procfs
(the CLI's light commands do) does not load cffi.
"""

from __future__ import annotations

import os
from typing import NamedTuple
from collections.abc import Container

from ._numa import ffi, lib
from .errors import NumaError


class StatLine(NamedTuple):
    """What the daemon's scan takes from a user process's ``/proc/PID/stat``."""

    pid: int
    comm: str
    threads: int
    starttime: int   # clock ticks after boot
    rss_pages: int


class StatScanner:
    """Reads every stat line under ``root``; kernel threads, vanished and unreadable
    entries are left out.  The record buffer is kept and grows with the number of
    processes."""

    def __init__(self, root: str = "/proc"):
        self._root = os.fsencode(root)
        self._more = ffi.new("int *")
        self._records = ffi.new("struct nd_proc_stat[]", 1024)
        self._capacity = 1024

    def scan(self, skip_comms: Container[bytes] = frozenset()) -> list[StatLine]:
        """The stat lines, except those whose raw comm is in ``skip_comms`` (not even decoded)."""
        while True:
            count = lib.nd_scan_procs(self._root, self._records, self._capacity, self._more)
            if count < 0:
                code = ffi.errno
                raise NumaError(f"reading {os.fsdecode(self._root)}: {os.strerror(code)}", errno=code)
            if not self._more[0]:
                break
            self._capacity *= 4
            self._records = ffi.new("struct nd_proc_stat[]", self._capacity)
        string = ffi.string
        lines = []
        for record in self._records[0:count]:
            comm = string(record.comm)
            if comm in skip_comms:
                continue
            lines.append(StatLine(record.pid, comm.decode(errors="replace"), record.threads,
                                  record.starttime, record.rss_pages))
        return lines
