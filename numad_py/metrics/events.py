"""Event counters the daemon bumps (``Counter``/``Histogram``), held by :class:`Metrics`."""

from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import Any
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from .. import __version__
from ..nodes import format_nodes
from .collector import NumadCollector, StateProvider

log = logging.getLogger("numad_py.metrics")


#: Why a migration happened.  Anything else is recorded as ``"other"`` (with a warning once),
#: so a typo cannot take the daemon down nor grow the label set without bound.
REASONS = ("request", "schedule", "drain", "auto")
OTHER_REASON = "other"

#: Stages of one tick, as the error boundary counts them (``numad_tick_errors_total{stage}``).
TICK_STAGES = ("reload", "sense", "decide", "act", "publish", "status", "state", "other")

#: Results of a control request; anything else is recorded as ``"error"``.
REQUEST_RESULTS = ("ok", "error", "denied", "invalid")

#: One ``move_pages``/``migrate_pages`` call holds the target's mm; 0.1 ms … 1 s (+Inf).
STALL_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: A whole migration (all chunks of one action): 1 ms … 2 min.
MIGRATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: One sense→decide→act tick: 1 ms … 1 min.
SCAN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

NodeSpec = str | int | Iterable[int]


def _node_label(nodes: NodeSpec) -> str:
    """A node-list label as numactl writes it: ``"0"``, ``"0,2"``, ``"0-3"``; ``""`` if unknown."""
    if isinstance(nodes, str):
        return nodes.strip()
    if isinstance(nodes, int):
        return str(nodes)
    return format_nodes(nodes)


class Metrics:
    """The daemon's metrics.  Build one in the composition root; pass it to whoever records.

    ``registry``: where everything registers (a fresh ``CollectorRegistry`` when omitted; pass
    ``prometheus_client.REGISTRY`` to share the process-global one).
    ``sys_root``: the sysfs root for per-node memory (tests hand a literal tree); ``None`` turns
    the per-node families off.
    ``state_provider``: a callable returning the daemon's latest view, see :class:`NumadCollector`.

    All ``record_*`` methods are thread-safe (client_python metrics lock internally) and cheap.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        version: str = __version__,
        sys_root: str | Path | None = "/sys",
        state_provider: StateProvider | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self._warned: set[str] = set()

        self.migrated_pages = Counter(
            "numad_migrated_pages", "Base pages moved to another node, by source nodes, target nodes and reason.",
            ["from", "to", "reason"], registry=r)
        self.migrated_bytes = Counter(
            "numad_migrated_bytes", "Bytes moved to another node (pages x page size), by source, target and reason.",
            ["from", "to", "reason"], registry=r)
        self.already_pages = Counter(
            "numad_migration_already_placed_pages",
            "Pages a migration found already on a target node (nothing to do), by reason.",
            ["reason"], registry=r)
        self.failed_pages = Counter(
            "numad_migration_failed_pages",
            "Pages a migration could not move, by outcome (shared, busy, fault, io, unmovable, no_memory, ...) "
            "and reason.",
            ["outcome", "reason"], registry=r)
        self.migrations = Counter(
            "numad_migrations", "Migrations carried out (one per action on one process), by reason.",
            ["reason"], registry=r)
        self.migration_duration = Histogram(
            "numad_migration_duration_seconds", "Wall time of one migration (all its chunks), by reason.",
            ["reason"], buckets=MIGRATION_BUCKETS, registry=r)
        self.stall = Histogram(
            "numad_migration_stall_seconds",
            "Longest single move_pages/migrate_pages call per migration chunk, its fixed cost "
            "(which max_stall does not count) included.",
            buckets=STALL_BUCKETS, registry=r)
        self.budget_wait = Counter(
            "numad_budget_wait_seconds", "Time migrations waited for the migration budget ([daemon] budget), "
            "all of them together.", registry=r)
        self.scans = Counter("numad_scans", "Scans (sense, decide, act ticks) completed.", registry=r)
        self.scan_duration = Histogram(
            "numad_scan_duration_seconds", "Wall time of one scan tick.", buckets=SCAN_BUCKETS, registry=r)
        self.reloads = Counter(
            "numad_config_reloads", "Configuration reloads, by result (ok, error).", ["result"], registry=r)
        self.last_reload_ok = Gauge(
            "numad_config_last_reload_successful", "1 if the last configuration reload succeeded, else 0.",
            registry=r)
        self.last_reload_time = Gauge(
            "numad_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.", registry=r)
        self.tick_errors = Counter(
            "numad_tick_errors", "Failures caught by the loop's error boundary, by stage of the tick; "
            "the daemon logged each and went on.", ["stage"], registry=r)
        self.requests = Counter(
            "numad_control_requests", "Control socket requests, by operation and result.",
            ["op", "result"], registry=r)
        self.tier_moves = Counter(
            "numad_tier_moves", "Tier moves done (tier rules), by rule and direction (promote: to the fast "
            "node, demote: to the slow nodes).", ["rule", "direction"], registry=r)
        self.tier_moved_bytes = Counter(
            "numad_tier_moved_bytes", "Bytes tier moves put on a node, by rule and direction.",
            ["rule", "direction"], registry=r)
        self.build_info = Info("numad_build", "numad-py build information.", registry=r)
        self.build_info.info({"version": version, "python": platform.python_version()})

        for result in ("ok", "error"):
            self.reloads.labels(result=result)   # export zeros, so rate() and alerts work from the start
        for stage in TICK_STAGES:
            self.tick_errors.labels(stage=stage)
        self.last_reload_ok.set(1)

        self.collector = NumadCollector(sys_root=sys_root, state_provider=state_provider)
        r.register(self.collector)

    # ---- events -------------------------------------------------------------------------------

    def record_migration(self, result: Any, *, source: NodeSpec, target: NodeSpec, reason: str,
                         stall: bool = True) -> None:
        """Count one finished migration (a :class:`numad_py.numa.MigrationResult`).

        ``source``/``target``: node lists (``"0"``, ``"0,2"``, or an iterable of ids).  Reads
        ``moved``, ``already``, ``failed`` (outcome -> pages), ``page_size``, ``seconds``,
        ``longest_call_seconds`` and ``calls``.  With ``stall=True`` (default) the result's
        ``longest_call_seconds`` goes into the stall histogram; pass ``stall=False`` when the
        executor calls :meth:`observe_stall` per chunk itself, so nothing is counted twice.
        """
        reason = self._reason(reason)
        src, dst = _node_label(source), _node_label(target)
        moved = int(getattr(result, "moved", 0) or 0)
        page_size = int(getattr(result, "page_size", 4096) or 4096)
        if moved:
            self.migrated_pages.labels(src, dst, reason).inc(moved)
            self.migrated_bytes.labels(src, dst, reason).inc(moved * page_size)
        already = int(getattr(result, "already", 0) or 0)
        if already:
            self.already_pages.labels(reason).inc(already)
        for outcome, pages in dict(getattr(result, "failed", None) or {}).items():
            if pages:
                self.failed_pages.labels(str(outcome), reason).inc(pages)
        self.migrations.labels(reason).inc()
        self.migration_duration.labels(reason).observe(max(0.0, float(getattr(result, "seconds", 0.0) or 0.0)))
        if stall and int(getattr(result, "calls", 0) or 0) > 0:
            self.observe_stall(float(getattr(result, "longest_call_seconds", 0.0) or 0.0))

    def observe_stall(self, seconds: float) -> None:
        """One migration syscall's duration (or the longest of a chunk's calls)."""
        self.stall.observe(max(0.0, seconds))

    def record_budget_wait(self, seconds: float) -> None:
        """A chunk waited ``seconds`` for the budget before it moved."""
        self.budget_wait.inc(max(0.0, seconds))

    def record_scan(self, seconds: float) -> None:
        """One completed scan tick and how long it took."""
        self.scans.inc()
        self.scan_duration.observe(max(0.0, seconds))

    def record_reload(self, ok: bool, when: float) -> None:
        """A configuration (re)load finished; ``when`` is its Unix time.  Call it for the first load too."""
        self.reloads.labels("ok" if ok else "error").inc()
        self.last_reload_ok.set(1 if ok else 0)
        if ok:
            self.last_reload_time.set(when)

    def record_tick_error(self, stage: str) -> None:
        """One failure the tick's error boundary caught; ``stage`` one of :data:`TICK_STAGES`."""
        if stage not in TICK_STAGES:
            self._warn_once(f"stage:{stage}", "unknown tick stage %r counted as 'other'", stage)
            stage = "other"
        self.tick_errors.labels(stage).inc()

    def record_tier_move(self, rule: str, tier: str, nbytes: int) -> None:
        """One tier move done: ``tier`` "fast" is a promotion, "slow" a demotion."""
        direction = "promote" if tier == "fast" else "demote"
        self.tier_moves.labels(rule, direction).inc()
        self.tier_moved_bytes.labels(rule, direction).inc(max(0, nbytes))

    def record_request(self, op: str, result: str) -> None:
        """One control-socket request.  ``op`` is the request's operation name (a fixed set in the
        protocol: never put user input here); ``result`` one of :data:`REQUEST_RESULTS`."""
        if result not in REQUEST_RESULTS:
            self._warn_once(f"result:{result}", "unknown control request result %r counted as 'error'", result)
            result = "error"
        self.requests.labels(str(op), result).inc()

    # ---- helpers ------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text exposition (what a scrape returns) — for tests and ``numad-py status``."""
        return generate_latest(self.registry)

    def _reason(self, reason: str) -> str:
        if reason in REASONS:
            return reason
        self._warn_once(f"reason:{reason}", "unknown migration reason %r counted as %r", reason, OTHER_REASON)
        return OTHER_REASON

    def _warn_once(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)
