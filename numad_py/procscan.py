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
from collections.abc import Collection

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
    entries are left out (the kernel threads' comms are kept in ``kernel_comms``).
    The record buffer is kept and grows with the number of processes."""

    def __init__(self, root: str = "/proc"):
        self._root = os.fsencode(root)
        self._more = ffi.new("int *")
        self._records = ffi.new("struct nd_proc_stat[]", 1024)
        self._capacity = 1024
        self._skip_source: frozenset[bytes] = frozenset()
        self._skip_strings: list = []
        self._skip = ffi.NULL
        # The last scan's kernel threads not skipped: a caller that rules their comms out
        # can skip them next time (the C pass then reads only their comm file).
        self.kernel_comms: set[bytes] = set()

    def scan(self, skip_comms: Collection[bytes] = frozenset()) -> list[StatLine]:
        """The stat lines, except those whose raw comm is in ``skip_comms``: the C pass
        leaves them out, so an idle machine costs Python nothing per process."""
        skip, count_skip = self._skip_array(skip_comms)
        while True:
            count = lib.nd_scan_procs(self._root, self._records, self._capacity, self._more, skip, count_skip)
            if count < 0:
                code = ffi.errno
                raise NumaError(f"reading {os.fsdecode(self._root)}: {os.strerror(code)}", errno=code)
            if not self._more[0]:
                break
            self._capacity *= 4
            self._records = ffi.new("struct nd_proc_stat[]", self._capacity)
        string = ffi.string
        records = self._records[0:count]
        self.kernel_comms = {string(record.comm) for record in records if record.kernel_thread}
        return [StatLine(record.pid, string(record.comm).decode(errors="replace"), record.threads,
                         record.starttime, record.rss_pages)
                for record in records if not record.kernel_thread]

    def _skip_array(self, skip_comms: Collection[bytes]):
        """``skip_comms`` as a sorted C array, rebuilt only when it changed."""
        if self._skip_source != skip_comms:
            self._skip_source = frozenset(skip_comms)
            # A comm holds no NUL and at most 63 bytes in a record: others never match.
            self._skip_strings = [ffi.new("char[]", comm) for comm in sorted(self._skip_source)
                                  if b"\0" not in comm and len(comm) < 64]
            self._skip = ffi.new("const char *[]", self._skip_strings)
        return self._skip, len(self._skip_strings)
