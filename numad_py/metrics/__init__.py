"""Prometheus metrics: event counters the daemon bumps, and a collector read at scrape time.

Two kinds of values, kept apart the way client_python intends:

* **Events** the daemon causes (pages migrated, scans, reloads, control requests) are
  ``Counter``/``Histogram`` objects held by :class:`Metrics`.  The daemon calls a handful of
  ``record_*`` methods; nothing else touches the metric objects.
* **State** read when Prometheus scrapes (per-node memory from sysfs, the daemon's latest view
  of its rules, NUMA balancing) comes from :class:`NumadCollector`, which calls
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

from .collector import NumadCollector, StateProvider
from .events import REASONS, REQUEST_RESULTS, TICK_STAGES, Metrics
from ..defaults import DEFAULT_HOST, DEFAULT_LISTEN, DEFAULT_PORT, parse_listen
from .http import MetricsServer, start_http_server

__all__ = [
    "DEFAULT_HOST", "DEFAULT_LISTEN", "DEFAULT_PORT", "Metrics", "MetricsServer", "NumadCollector", "REASONS",
    "REQUEST_RESULTS", "StateProvider", "TICK_STAGES", "parse_listen", "start_http_server",
]
