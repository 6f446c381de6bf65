"""Prometheus metrics: event counters the daemon bumps, and a collector read at scrape time.

Two kinds of values, kept apart the way client_python intends:

* **Events** the daemon causes (pages migrated, scans, reloads, control requests) are
  ``Counter``/``Histogram`` objects held by :class:`Metrics`.  The daemon calls a handful of
  ``record_*`` methods; nothing else touches the metric objects.
* **State** read when Prometheus scrapes (per-node memory from sysfs, the daemon's latest view
  of its rules, NUMA balancing, shim fallbacks) comes from :class:`NumadCollector`, which calls
  back into sysfs and into callables the daemon passes in.  A failing source is skipped (and
  counted in ``numad_collector_errors_total``), never turned into a failed scrape.

Everything registers into the ``CollectorRegistry`` given to :class:`Metrics` — a fresh private
one by default, so tests and several instances never collide on the global registry.

Naming: every family starts with ``numad_``; byte counts end in ``_bytes``, durations in
``_seconds``, counters in ``_total``; the per-node label is ``node`` (as node_exporter's, so
dashboards can join).  There is no ``pid`` label anywhere: processes come and go and would make
the series count unbounded.  Per-process detail belongs in ``numad-py status --json``.

The HTTP endpoint: :func:`start_http_server` with a listen string (``"127.0.0.1:9816"``,
``"[::1]:9816"``, ``""`` to disable).  The default port is :data:`DEFAULT_PORT` (9816).
"""

from __future__ import annotations

import logging
import platform
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from . import __version__
from .nodes import format_nodes
from .topology import read_topology

log = logging.getLogger(__name__)

# One HOST:PORT grammar for check-config and the daemon (numad_py.defaults).
from .defaults import DEFAULT_HOST, DEFAULT_LISTEN, DEFAULT_PORT, parse_listen  # noqa: E402,F401

#: Why a migration happened.  Anything else is recorded as ``"other"`` (with a warning once),
#: so a typo cannot take the daemon down nor grow the label set without bound.
REASONS = ("request", "schedule", "drain", "auto")
OTHER_REASON = "other"

#: Results of a control request; anything else is recorded as ``"error"``.
REQUEST_RESULTS = ("ok", "error", "denied", "invalid")

#: One ``move_pages``/``migrate_pages`` call holds the target's mm; 0.1 ms … 1 s (+Inf).
STALL_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: A whole migration (all chunks of one action): 1 ms … 2 min.
MIGRATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: One sense→decide→act tick: 1 ms … 1 min.
SCAN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

StateProvider = Callable[[], Mapping[str, Any] | None]
ShimFallbacks = Callable[[], int | None]
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
    ``shim_fallbacks``: a callable returning how many times the fork-time shim fell back
    (cumulative count read from the shim's table), or ``None`` when unknown.

    All ``record_*`` methods are thread-safe (client_python metrics lock internally) and cheap.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        version: str = __version__,
        sys_root: str | Path | None = "/sys",
        state_provider: StateProvider | None = None,
        shim_fallbacks: ShimFallbacks | None = None,
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
            "Longest single move_pages/migrate_pages call per migration chunk: how long the target "
            "process's memory map was held.",
            buckets=STALL_BUCKETS, registry=r)
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
        self.requests = Counter(
            "numad_control_requests", "Control socket requests, by operation and result.",
            ["op", "result"], registry=r)
        self.build_info = Info("numad_build", "numad-py build information.", registry=r)
        self.build_info.info({"version": version, "python": platform.python_version()})

        for result in ("ok", "error"):
            self.reloads.labels(result=result)   # export zeros, so rate() and alerts work from the start
        self.last_reload_ok.set(1)

        self.collector = NumadCollector(sys_root=sys_root, state_provider=state_provider,
                                        shim_fallbacks=shim_fallbacks)
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


class NumadCollector(Collector):
    """Values read at scrape time.

    From sysfs (``sys_root``, default ``/sys``; ``None`` = off), via :func:`read_topology`:

    * ``numad_node_memory_total_bytes{node}``, ``numad_node_memory_free_bytes{node}``
    * ``numad_node_cpus{node}`` — CPUs on the node (0 for a memory-only node)

    From ``state_provider()`` — the daemon's latest view, a plain dict (any key may be missing;
    ``None`` or ``{}`` means "no scan yet")::

        {
            "time": 1700000000.0,            # Unix time of the snapshot the view is from
            "numa_balancing": 0,             # /proc/sys/kernel/numa_balancing, or None if absent
            "processes": 412,                # processes seen by the last scan
            "rules": {                       # by rule name, every configured rule (even idle)
                "db": {
                    "processes": 3,          # processes the rule manages now
                    "resident_bytes": {0: 1073741824, 1: 4096},   # node id (int or str) -> bytes,
                },                           #   summed over the rule's processes
            },
        }

    gives ``numad_snapshot_timestamp_seconds``, ``numad_numa_balancing``,
    ``numad_processes``, ``numad_rule_processes{rule}`` and
    ``numad_rule_resident_bytes{rule,node}``.

    From ``shim_fallbacks()`` (an int, cumulative): ``numad_shim_fallbacks_total``.

    Errors in any source are logged at debug level and counted in
    ``numad_collector_errors_total{source}``; the rest of the scrape goes on.
    """

    SOURCES = ("topology", "state", "shim")

    def __init__(self, *, sys_root: str | Path | None = "/sys",
                 state_provider: StateProvider | None = None,
                 shim_fallbacks: ShimFallbacks | None = None) -> None:
        self.sys_root = sys_root
        self.state_provider = state_provider
        self.shim_fallbacks = shim_fallbacks
        self._errors = {s: 0 for s in self.SOURCES}
        self._lock = threading.Lock()

    def describe(self):
        # Static descriptions, so registering never calls the providers.
        return list(self._families())

    def collect(self):
        return list(self._families(live=True))

    def _failed(self, source: str, exc: BaseException) -> None:
        with self._lock:
            self._errors[source] += 1
        log.debug("metrics: reading %s failed: %s", source, exc)

    def _families(self, live: bool = False):
        if self.sys_root is not None:
            total = GaugeMetricFamily("numad_node_memory_total_bytes", "Memory on the NUMA node (sysfs meminfo MemTotal).",
                                      labels=["node"])
            free = GaugeMetricFamily("numad_node_memory_free_bytes", "Free memory on the NUMA node (sysfs meminfo MemFree).",
                                     labels=["node"])
            cpus = GaugeMetricFamily("numad_node_cpus", "CPUs on the NUMA node (0 for a memory-only node).",
                                     labels=["node"])
            if live:
                try:
                    for n in read_topology(self.sys_root).nodes:
                        total.add_metric([str(n.id)], n.mem_total)
                        free.add_metric([str(n.id)], n.mem_free)
                        cpus.add_metric([str(n.id)], len(n.cpus))
                except (OSError, ValueError) as exc:
                    self._failed("topology", exc)
            yield total
            yield free
            yield cpus

        if self.state_provider is not None:
            ts = GaugeMetricFamily("numad_snapshot_timestamp_seconds", "Unix time of the snapshot behind the rule gauges.")
            bal = GaugeMetricFamily("numad_numa_balancing",
                                    "kernel.numa_balancing at the last scan (0 off, 1 normal, 2 memory tiering, 3 both).")
            procs = GaugeMetricFamily("numad_processes", "Processes seen by the last scan.")
            rproc = GaugeMetricFamily("numad_rule_processes", "Processes a rule manages, at the last scan.", labels=["rule"])
            rres = GaugeMetricFamily("numad_rule_resident_bytes",
                                     "Resident memory a rule moves (its memory selection) on each node, at the last scan.",
                                     labels=["rule", "node"])
            if live:
                try:
                    self._add_state(self.state_provider() or {}, ts, bal, procs, rproc, rres)
                except Exception as exc:  # a bug in the provider must not fail the scrape
                    self._failed("state", exc)
            yield from (ts, bal, procs, rproc, rres)

        if self.shim_fallbacks is not None:
            fb = CounterMetricFamily("numad_shim_fallbacks", "Times the fork-time shim fell back (no usable node table).")
            if live:
                try:
                    value = self.shim_fallbacks()
                    if value is not None:
                        fb.add_metric([], int(value))
                except Exception as exc:
                    self._failed("shim", exc)
            yield fb

        errs = CounterMetricFamily("numad_collector_errors", "Scrape-time reads that failed, by source.", labels=["source"])
        with self._lock:
            for source in self.SOURCES:
                errs.add_metric([source], self._errors[source])
        yield errs

    @staticmethod
    def _add_state(state: Mapping[str, Any], ts, bal, procs, rproc, rres) -> None:
        if state.get("time") is not None:
            ts.add_metric([], float(state["time"]))
        if state.get("numa_balancing") is not None:
            bal.add_metric([], int(state["numa_balancing"]))
        if state.get("processes") is not None:
            procs.add_metric([], int(state["processes"]))
        for name, rule in sorted((state.get("rules") or {}).items()):
            rule = rule or {}
            rproc.add_metric([str(name)], int(rule.get("processes", 0) or 0))
            resident = rule.get("resident_bytes") or {}
            for node in sorted(resident, key=lambda n: int(n)):
                rres.add_metric([str(name), str(int(node))], int(resident[node]))


# ---- HTTP endpoint ----------------------------------------------------------------------------


@dataclass
class MetricsServer:
    """A running endpoint.  ``port`` is the bound one (useful with port 0)."""

    host: str
    port: int
    _httpd: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def start_http_server(listen: str, registry: CollectorRegistry | Metrics) -> MetricsServer | None:
    """Serve ``registry`` (or a :class:`Metrics`' registry) on ``listen`` in a daemon thread.

    ``""`` disables the endpoint and returns ``None``.  A malformed address raises
    ``ValueError``; an address that cannot be bound (in use, not local) raises ``OSError``.
    """
    parsed = parse_listen(listen)
    if parsed is None:
        return None
    host, port = parsed
    if isinstance(registry, Metrics):
        registry = registry.registry
    from prometheus_client import start_http_server as _start

    try:
        httpd, thread = _start(port, addr=host, registry=registry)
    except socket.gaierror as exc:
        raise ValueError(f"metrics listen address {listen!r}: cannot resolve host {host!r}: {exc}") from None
    bound = httpd.server_address
    log.info("metrics endpoint on %s:%s", bound[0], bound[1])
    return MetricsServer(host=str(bound[0]), port=int(bound[1]), _httpd=httpd, _thread=thread)


__all__ = [
    "DEFAULT_LISTEN", "DEFAULT_PORT", "Metrics", "MetricsServer", "NumadCollector", "REASONS",
    "REQUEST_RESULTS", "parse_listen", "start_http_server",
]
