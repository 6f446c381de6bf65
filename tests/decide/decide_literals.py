"""Literal snapshots for the planner tables: a two-node machine, 8 GiB per node."""

from __future__ import annotations

from numad_py.config import Config, Rule
from numad_py.decide.snapshot import NodeInfo, ProcessInfo, Snapshot

GiB = 1 << 30
MiB = 1 << 20
NOW = 1000.0

NODE0 = NodeInfo(id=0, cpus=frozenset({0, 1}), mem_total=8 * GiB, mem_free=2 * GiB, has_cpu=True)
NODE1 = NodeInfo(id=1, cpus=frozenset({2, 3}), mem_total=8 * GiB, mem_free=6 * GiB, has_cpu=True)
MEMONLY2 = NodeInfo(id=2, cpus=frozenset(), mem_total=8 * GiB, mem_free=8 * GiB, has_cpu=False)
DISTANCES = {(a, b): 10 if a == b else 20 for a in range(3) for b in range(3)}


def proc(pid=100, comm="postgres", **kw) -> ProcessInfo:
    kw.setdefault("residency", {0: GiB})
    kw.setdefault("rss", sum(kw["residency"].values()) if kw["residency"] else GiB)
    kw.setdefault("uid", 1000)
    kw.setdefault("user", "pg")
    kw.setdefault("cgroup", "/system.slice/postgresql.service")
    kw.setdefault("exe", "/usr/bin/postgres")
    kw.setdefault("cmdline", ("postgres", "-D", "/var/lib/pg"))
    return ProcessInfo(pid=pid, start_time=50.0 + pid, comm=comm, **kw)


def snap(*processes, nodes=(NODE0, NODE1), numa_balancing=0, cpu_load=None, time=NOW) -> Snapshot:
    return Snapshot(
        time=time,
        nodes=nodes,
        distances=DISTANCES,
        processes=processes,
        numa_balancing=numa_balancing,
        cpu_load=cpu_load or {},
    )


def config(*rules: dict, **daemon) -> Config:
    parsed = [Rule.model_validate({"name": f"r{i}", **r}) for i, r in enumerate(rules)]
    return Config.model_validate({"daemon": daemon, "rules": parsed})
