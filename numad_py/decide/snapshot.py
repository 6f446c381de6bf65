"""What the sense layer saw in one scan, as plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping

Identity = tuple[int, float]  # (pid, start_time): catches pid reuse


@dataclass(frozen=True)
class NodeInfo:
    id: int
    cpus: frozenset[int]
    mem_total: int  # bytes
    mem_free: int   # bytes
    has_cpu: bool
    tier: int | None = None  # kernel memory tier id, higher = slower; None = no tiers known


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    start_time: float  # seconds since the epoch, as psutil's create_time()
    comm: str
    # exe, cmdline and cgroup as far as matching read them (their only use: the sensor's
    # match and the planner's read the same ones); None / () = not read, or unreadable.
    exe: str | None = None
    cmdline: tuple[str, ...] = ()
    uid: int | None = None
    user: str | None = None            # None: uid without a passwd entry
    cgroup: str | None = None          # cgroup v2 path, "/system.slice/x.service"
    rss: int = 0                       # bytes
    # Bytes per node of the memory the matching rule moves (whole process for
    # memory = "all"); candidates only, None if unreadable.
    residency: Mapping[int, int] | None = None
    threads: int = 1
    cpu_affinity: frozenset[int] | None = None
    mems_allowed: frozenset[int] | None = None  # Mems_allowed_list: its cpuset's effective mems; None = unknown
    # The task's memory policy as numa_maps shows it ("default", "prefer:1", ...); read only for
    # the rules planner.reads_task_policy names.  None = not read.
    task_policy: str | None = None

    @property
    def identity(self) -> Identity:
        return (self.pid, self.start_time)


@dataclass(frozen=True)
class RegionAccess:
    """One DAMON region of a process, clipped to one mapping (sense/damon.py)."""

    start: int
    end: int
    nr_accesses: int                  # samples that saw an access in the last aggregation interval
    age: int                          # aggregation intervals the access count stayed about the same
    nodes: Mapping[int, int] = field(default_factory=dict)  # bytes per node, estimated from sampled pages
    # Seconds since the sensor last saw any access in this range (at its ticks); None = not tracked.
    # DAMON's age alone is not idle time: it counts intervals whose access count stayed about the
    # same, and a count flickering between 0 and 1 keeps aging.
    idle_seconds: float | None = None
    # Consecutive measurements (at the sensor's ticks) that saw an access here, capped at 4;
    # None = not tracked.  A region DAMON has not split yet is partly hot for one look.
    hot_streak: int | None = None
    # At the edge of a hot run (a neighbouring 2 MiB was not seen hot): DAMON's boundaries
    # wander there, so the cold memory next to a hot range looks hot now and then.
    hot_edge: bool = False

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class ProcessAccess:
    """What DAMON measured for one process, and the intervals needed to read it."""

    regions: tuple[RegionAccess, ...]
    sample_us: int
    aggr_us: int

    @property
    def max_accesses(self) -> int:
        return max(1, self.aggr_us // max(1, self.sample_us))


@dataclass(frozen=True)
class Snapshot:
    time: float
    nodes: tuple[NodeInfo, ...]
    distances: Mapping[tuple[int, int], int] = field(default_factory=dict)
    processes: tuple[ProcessInfo, ...] = ()
    numa_balancing: int | None = None  # /proc/sys/kernel/numa_balancing; None = not available
    cpu_load: Mapping[int, float] = field(default_factory=dict)  # per node, 0.0 idle .. 1.0 busy
    # Tier rules: DAMON's measurements per candidate; why DAMON cannot serve here (None = it can).
    access: Mapping[Identity, ProcessAccess] = field(default_factory=dict)
    access_missing: str | None = None

    @property
    def node_ids(self) -> frozenset[int]:
        return frozenset(n.id for n in self.nodes)

    def node(self, node_id: int) -> NodeInfo:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def cpus_of(self, node_ids: frozenset[int]) -> frozenset[int]:
        return frozenset().union(*(n.cpus for n in self.nodes if n.id in node_ids))
