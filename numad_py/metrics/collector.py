"""Values read when Prometheus scrapes: sysfs per-node memory and the daemon's latest view."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..topology import read_topology

log = logging.getLogger("numad_py.metrics")

StateProvider = Callable[[], Mapping[str, Any] | None]


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
                                             #   summed over the rule's processes
                    "tier_bytes": {"fast": 1, "slow": 2},  # tier rules only: bytes on its fast/slow nodes
                },
            },
        }

    gives ``numad_snapshot_timestamp_seconds``, ``numad_numa_balancing``,
    ``numad_processes``, ``numad_rule_processes{rule}``,
    ``numad_rule_resident_bytes{rule,node}`` and ``numad_tier_bytes{rule,tier}``.

    Errors in any source are logged at debug level and counted in
    ``numad_collector_errors_total{source}``; the rest of the scrape goes on.
    """

    SOURCES = ("topology", "state")

    def __init__(self, *, sys_root: str | Path | None = "/sys",
                 state_provider: StateProvider | None = None) -> None:
        self.sys_root = sys_root
        self.state_provider = state_provider
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
            tier = GaugeMetricFamily("numad_node_memory_tier", "The kernel's memory tier of the node (higher = slower).",
                                     labels=["node"])
            shape = GaugeMetricFamily("numad_host_nodes", "Nodes of this host by kind, to group hosts by shape: cpu "
                                      "(nodes with CPUs), memory_only, slow_tier (below the fastest memory tier).",
                                      labels=["kind"])
            if live:
                try:
                    topo = read_topology(self.sys_root)
                    for n in topo.nodes:
                        total.add_metric([str(n.id)], n.mem_total)
                        free.add_metric([str(n.id)], n.mem_free)
                        cpus.add_metric([str(n.id)], len(n.cpus))
                        node_tier = topo.tier_of(n.id)
                        if node_tier is not None:
                            tier.add_metric([str(n.id)], node_tier)
                    shape.add_metric(["cpu"], sum(1 for n in topo.nodes if n.has_cpu))
                    shape.add_metric(["memory_only"], len(topo.memory_only_nodes))
                    shape.add_metric(["slow_tier"], len(topo.slow_tier_nodes))
                except (OSError, ValueError) as exc:
                    self._failed("topology", exc)
            yield from (total, free, cpus, tier, shape)

        if self.state_provider is not None:
            ts = GaugeMetricFamily("numad_snapshot_timestamp_seconds", "Unix time of the snapshot behind the rule gauges.")
            bal = GaugeMetricFamily("numad_numa_balancing",
                                    "kernel.numa_balancing at the last scan (0 off, 1 normal, 2 memory tiering, 3 both).")
            procs = GaugeMetricFamily("numad_processes", "Processes seen by the last scan.")
            rproc = GaugeMetricFamily("numad_rule_processes", "Processes a rule manages, at the last scan.", labels=["rule"])
            rres = GaugeMetricFamily("numad_rule_resident_bytes",
                                     "Resident memory a rule moves (its memory selection) on each node, at the last scan.",
                                     labels=["rule", "node"])
            ractive = GaugeMetricFamily("numad_rule_active",
                                        "1 if the rule's node set exists on this machine, 0 if it is inactive here.",
                                        labels=["rule"])
            tiers = GaugeMetricFamily("numad_tier_bytes", "Resident memory of a tier rule's processes on its fast "
                                      "and slow nodes, at the last scan.", labels=["rule", "tier"])
            if live:
                try:
                    self._add_state(self.state_provider() or {}, ts, bal, procs, rproc, rres, ractive, tiers)
                except Exception as exc:  # a bug in the provider must not fail the scrape
                    self._failed("state", exc)
            yield from (ts, bal, procs, rproc, rres, ractive, tiers)

        errs = CounterMetricFamily("numad_collector_errors", "Scrape-time reads that failed, by source.", labels=["source"])
        with self._lock:
            for source in self.SOURCES:
                errs.add_metric([source], self._errors[source])
        yield errs

    @staticmethod
    def _add_state(state: Mapping[str, Any], ts, bal, procs, rproc, rres, ractive, tiers) -> None:
        if state.get("time") is not None:
            ts.add_metric([], float(state["time"]))
        if state.get("numa_balancing") is not None:
            bal.add_metric([], int(state["numa_balancing"]))
        if state.get("processes") is not None:
            procs.add_metric([], int(state["processes"]))
        for name, rule in sorted((state.get("rules") or {}).items()):
            rule = rule or {}
            rproc.add_metric([str(name)], int(rule.get("processes", 0) or 0))
            ractive.add_metric([str(name)], 0 if rule.get("inactive") else 1)
            resident = rule.get("resident_bytes") or {}
            for node in sorted(resident, key=lambda n: int(n)):
                rres.add_metric([str(name), str(int(node))], int(resident[node]))
            for tier, nbytes in sorted((rule.get("tier_bytes") or {}).items()):
                tiers.add_metric([str(name), str(tier)], int(nbytes))
