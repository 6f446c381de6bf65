"""The nodes as they are now — free memory and CPU load — without a process scan.

For pre-placement advice: a caller about to start a workload wants the load of
the last moment, not since boot, so /proc/stat is sampled twice.
"""

from __future__ import annotations

import time

from ..decide.snapshot import NodeInfo, Snapshot
from ..topology import read_topology
from ..procfs import parse_cpu_times


def _proc_stat(proc_root: str) -> str:
    with open(f"{proc_root}/stat") as f:
        return f.read()


def node_snapshot(*, sample_seconds: float = 0.25, proc_root: str = "/proc", sys_root: str = "/sys") -> Snapshot:
    """A Snapshot with nodes, distances and per-node CPU load over ``sample_seconds``."""
    before = parse_cpu_times(_proc_stat(proc_root))
    if sample_seconds > 0:
        time.sleep(sample_seconds)
    after = parse_cpu_times(_proc_stat(proc_root))
    topo = read_topology(sys_root)
    nodes = tuple(NodeInfo(id=n.id, cpus=n.cpus, mem_total=n.mem_total, mem_free=n.mem_free, has_cpu=n.has_cpu,
                     tier=topo.tier_of(n.id))
                  for n in topo.nodes)
    load = {}
    for node in nodes:
        busy = sum(after[c][0] - before.get(c, (0, 0))[0] for c in node.cpus if c in after)
        total = sum(after[c][1] - before.get(c, (0, 0))[1] for c in node.cpus if c in after)
        load[node.id] = busy / total if total > 0 else 0.0
    return Snapshot(time=time.time(), nodes=nodes, distances=dict(topo.distances), cpu_load=load)
