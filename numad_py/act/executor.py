"""The executor: turns planned actions into syscalls, under one budget.

Scheduled work and requests from the control socket go through the same
``Executor``, so they share the migration budget (bytes/s) and the stall
bound (longest single ``move_pages``).  Right before acting it re-checks
that the pid still names the same process; dry-run is decided here, at the
lowest effect function, so nothing above it can forget to honour it.

Scheduled work and each requesting uid take turns chunk by chunk
(``turns.py``), so none starves another; a reload reconfigures this one executor
(:meth:`Executor.reconfigure`) rather than building a second one.  Every
chunk completed calls ``beat``: the watchdog heartbeat's sign of progress.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import partial
from dataclasses import dataclass, field
from collections.abc import Callable

from ..errors import (
    CAPABILITY_FOR,
    InvalidArgument,
    NumaError,
    PermissionDenied,
    ProcessGone,
    classify,
)
from .. import procfs
from ..nodes import format_nodes
from ..numa import PAGE_SIZE, MigrationResult, migrate_ranges
from ..numa.place import place_ranges
from ..sense.maps import resolve_memory
from ..sense.identity import start_time_of
from ..topology import Topology
from .turns import Turn, Turns, holder_of

log = logging.getLogger("numad_py.act")


@dataclass
class Outcome:
    """What happened to one action; ``status`` is one of STATUSES."""

    kind: str
    pid: int
    comm: str
    rule: str
    target: frozenset[int]
    status: str
    message: str = ""
    result: MigrationResult | None = None
    seconds: float = 0.0
    when: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        out = {
            "kind": self.kind, "pid": self.pid, "comm": self.comm, "rule": self.rule,
            "target": format_nodes(self.target), "status": self.status, "message": self.message,
            "seconds": round(self.seconds, 6), "when": self.when,
        }
        if self.result is not None:
            out["result"] = self.result.to_dict()
        return out


STATUSES = ("done", "dry-run", "gone", "skipped", "retry", "cancelled")


class Executor:
    """Runs one action at a time, chunks of scheduled work and of requests taking turns;
    thread-safe (requests and the scheduler share it)."""

    def __init__(
        self,
        *,
        topology: Callable[[], Topology],
        pacer,                      # .before_chunk/.after_chunk: the budget around a chunk; .set_rate(bytes/s)
        stall,                      # .next_batch(pages, seconds) -> pages; .set_max_stall(seconds)
        dry_run: bool = False,
        metrics=None,
        stop: threading.Event | None = None,
        beat: Callable[[], None] | None = None,    # called after every chunk: progress
    ):
        self._topology = topology
        self._pacer = pacer
        self._stall = stall
        self.dry_run = dry_run
        self._metrics = metrics
        self._stop = stop or threading.Event()
        self._beat = beat
        self._turns = Turns()

    def reconfigure(self, *, budget: float, max_stall: float) -> None:
        """Apply a reloaded [daemon] budget and stall bound to this executor, in place:
        running jobs keep going under the new values and the budget is not refilled."""
        self._pacer.set_rate(budget)
        self._stall.set_max_stall(max_stall)

    # --- public --------------------------------------------------------

    def execute(self, action, *, reason: str = "schedule", uid: int | None = None,
                progress: Callable[[int, int], None] | None = None,
                cancelled: Callable[[], bool] | None = None) -> Outcome:
        """Act on one planned action; never raises for a process-level failure.

        ``uid`` is the requester's: requests from different uids take turns
        with each other and with scheduled work, one chunk each per round."""
        outcome = Outcome(kind=action.kind, pid=action.pid, comm=action.comm, rule=action.rule,
                          target=frozenset(action.target_nodes), status="done")
        t0 = time.monotonic()
        try:
            with self._turns.turn(holder_of(reason, uid)) as turn:
                self._check_identity(action)
                if action.kind == "migrate":
                    outcome.result = self._migrate(action, reason, turn, progress, cancelled)
                    if outcome.result.cancelled:
                        outcome.status = "cancelled"
                elif action.kind == "pin":
                    self._pin(action)
                else:
                    outcome.status = "skipped"
                    outcome.message = "advisory only"
            if self.dry_run and action.kind in ("migrate", "pin"):
                outcome.status = "dry-run"
        except NumaError as exc:
            outcome.status = {"gone": "gone", "retry": "retry", "skip": "skipped"}[classify(exc)]
            outcome.message = str(exc)
        outcome.seconds = time.monotonic() - t0
        self._log(action, outcome)
        return outcome

    # --- effects (dry-run is checked here and nowhere else) -------------

    def _migrate(self, action, reason, turn: Turn, progress, cancelled) -> MigrationResult:
        ranges = resolve_memory(action.pid, action.memory)
        if self.dry_run:
            return MigrationResult(pid=action.pid, target=frozenset(action.target_nodes),
                                   pages_requested=sum((e - s) // PAGE_SIZE for s, e in ranges))

        def stop_requested() -> bool:
            return self._stop.is_set() or (cancelled is not None and cancelled())

        def within_budget(pages: int) -> int:
            limit = self._pacer.chunk_bytes()
            return pages if limit is None else max(1, min(pages, int(limit) // PAGE_SIZE))

        def next_batch(pages: int, seconds: float) -> int:
            if self._metrics is not None:
                self._metrics.observe_stall(seconds)
            return within_budget(self._stall.next_batch(pages, seconds))

        def before_chunk(nbytes: int) -> None:
            turn.chunk_boundary()       # the other class may take one turn here
            waited = self._pacer.before_chunk(nbytes, self._stop)
            if waited and self._metrics is not None:
                self._metrics.record_budget_wait(waited)

        def chunk_done(done: int, total: int) -> None:
            if self._beat is not None:
                self._beat()
            if progress is not None:
                progress(done, total)

        # Interleave policies (action.weights) place each page on its own node; else any target will do.
        place = partial(place_ranges, weights=dict(action.weights)) if getattr(action, "weights", ()) else \
            partial(migrate_ranges, nodes=action.target_nodes, count_huge_pages=True)   # once per action
        result = place(
            action.pid, ranges, move_all=action.move_all,
            batch_pages=within_budget(self._stall.batch), next_batch=next_batch, before_chunk=before_chunk,
            after_chunk=self._pacer.after_chunk, progress=chunk_done, cancelled=stop_requested, checked=False,
        )
        if self._metrics is not None:
            self._metrics.record_migration(result, source=format_nodes(action.from_nodes) or "-",
                                           target=format_nodes(action.target_nodes), reason=reason,
                                           stall=False)  # observed per chunk above
        return result

    def _pin(self, action) -> None:
        cpus = self._topology().cpus_of(action.target_nodes)
        if not cpus:
            raise InvalidArgument(f"nodes {format_nodes(action.target_nodes)} have no CPUs to pin to")
        if self.dry_run:
            return
        pinned = 0
        for tid in procfs.tasks(action.pid):
            try:
                os.sched_setaffinity(tid, cpus)
                pinned += 1
            except ProcessLookupError:
                continue  # a thread that exited between listing and pinning
            except PermissionError:
                raise PermissionDenied(f"sched_setaffinity pid {action.pid}",
                                       capability=CAPABILITY_FOR["sched_setaffinity"]) from None
        if not pinned:
            raise ProcessGone(f"process {action.pid} is gone")

    # --- helpers ---------------------------------------------------------

    def _check_identity(self, action) -> None:
        """The pid must still be the process the plan was made for (pid reuse)."""
        # Start times are kernel ticks (10 ms) turned into floats; compare
        # within half a tick rather than bit for bit.
        if abs(start_time_of(action.pid) - action.start_time) > 0.005:
            raise ProcessGone(f"process {action.pid} is gone (pid reused or exited)")

    def _log(self, action, outcome: Outcome) -> None:
        r = outcome.result
        moved = (f" pages={r.moved} bytes={r.bytes_moved} failed={r.failed_total}"
                 f" calls={r.calls} longest_ms={r.longest_call_seconds * 1000:.1f}") if r is not None else ""
        level = logging.INFO if outcome.status in ("done", "dry-run", "cancelled") else logging.WARNING
        log.log(level, "%s pid=%d comm=%s rule=%s %s->%s status=%s%s ms=%.1f%s",
                outcome.kind, action.pid, action.comm, action.rule,
                format_nodes(action.from_nodes) or "-", format_nodes(action.target_nodes),
                outcome.status, moved, outcome.seconds * 1000,
                f" ({outcome.message})" if outcome.message else "")
        if action.reason:   # with -v: why the planner asked for this move
            log.debug("%s pid=%d why: %s", outcome.kind, action.pid, action.reason)

