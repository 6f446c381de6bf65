"""The budget counts bytes moved, not bytes walked: the real Executor on the host walks a
buffer never touched (every page absent, so nothing can move) chunk by chunk and never
waits for budget.  Pacing on pages that really move is tested in the VM
(tests/numa/test_pacing.py)."""

from __future__ import annotations

import threading

from host_memory import MiB, Buffer
from numad_py.act.executor import Executor
from numad_py.act.pacing import Pacer
from numad_py.metrics import Metrics
from numad_py.stall import StallPolicy
from numad_py.topology import read_topology


def test_walking_memory_never_touched_spends_no_budget():
    waits: list[int] = []                          # the pacer beats once per slice of a wait
    pacer = Pacer(MiB, beat=lambda: waits.append(1))
    metrics = Metrics(sys_root=None)
    ex = Executor(topology=read_topology, pacer=pacer, stall=StallPolicy(10.0), stop=threading.Event(),
                  metrics=metrics)
    buf = Buffer(16 * MiB)
    chunks: list[int] = []

    def progress(done: int, _total: int) -> None:
        chunks.append(done - sum(chunks))

    outcome = ex.execute(buf.action(), reason="request", progress=progress)
    assert outcome.status == "done", outcome
    result = outcome.result
    assert result.pages_requested == 16 * MiB // 4096 and result.moved == 0
    assert result.not_present == result.pages_requested
    # Walked in chunks of at most one second of budget, each reserved and given back: charged
    # per address span, the walk waited about 15 s.
    assert len(chunks) >= 16 and max(chunks) <= MiB, chunks
    assert waits == [], f"waited {len(waits)} budget slice(s) for pages that did not move"
    assert pacer._bucket.available(pacer._bucket.updated) == MiB
    assert metrics.registry.get_sample_value("numad_budget_wait_seconds_total") == 0
