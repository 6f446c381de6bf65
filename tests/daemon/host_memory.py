"""A real buffer in this process and a migrate action on it, for the real Executor.

On the host (one node) the buffer is never touched: a page present would already be on the
target and numa_maps would count the mapping settled, so a mapping with no page present is
what gets walked chunk by chunk, each a real move_pages call that moves nothing.  The VM
tests (tests/numa/test_pacing.py) wrap a mapping whose pages sit on node 0 and move it."""

from __future__ import annotations

import ctypes
import mmap
import os
import threading

from numad_py import procfs
from numad_py.act.executor import Executor
from numad_py.act.pacing import Pacer
from numad_py.stall import StallPolicy
from numad_py.decide.actions import Action
from numad_py.topology import read_topology

MiB = 1 << 20


class Buffer:
    def __init__(self, size: int = 0, *, mapping: mmap.mmap | None = None, target: int = 0):
        self.map = mapping if mapping is not None else mmap.mmap(-1, size)   # no page present (see above)
        self.start = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self.end = self.start + len(self.map)
        self.target = target

    def action(self, rule: str = "test") -> Action:
        pid = os.getpid()
        return Action(kind="migrate", pid=pid, start_time=procfs.start_time(pid), comm="python",
                      rule=rule, target_nodes=frozenset({self.target}),
                      memory=(f"{self.start:x}-{self.end:x}",))


def executor(budget: float, *, beat=None, max_stall: float = 0.02) -> Executor:
    return Executor(topology=read_topology, pacer=Pacer(budget, beat=beat), stall=StallPolicy(max_stall),
                    stop=threading.Event(), beat=beat)
