"""The machine's NUMA layout from sysfs: nodes, CPUs, memory, distances, tiers.

Reads ``/sys/devices/system/node`` and ``/sys/devices/virtual/memory_tiering``
under an injectable root so tests can hand it a literal tree.  Memory-only
(CPU-less) nodes are first-class.

Memory tiers (Linux >= 6.1): each ``memory_tierN/nodelist`` names the nodes in
tier N; a higher N is slower memory (the kernel derives N from the node's
abstract distance, e.g. from ACPI HMAT).  Access performance (ACPI HMAT,
``nodeN/access0/initiators/``): the latency (ns) and bandwidth (MiB/s) with
which the best initiator nodes reach node N; absent when firmware gives none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .nodes import format_nodes, parse_cpulist, parse_nodes

NODE_DIR = "devices/system/node"
TIER_DIR = "devices/virtual/memory_tiering"
_TIER_NAME = re.compile(r"memory_tier(\d+)$")
_INITIATOR_LINK = re.compile(r"node(\d+)$")


@dataclass(frozen=True)
class Node:
    id: int
    cpus: frozenset[int]
    mem_total: int  # bytes
    mem_free: int   # bytes

    @property
    def has_cpu(self) -> bool:
        return bool(self.cpus)

    @property
    def has_memory(self) -> bool:
        return self.mem_total > 0


@dataclass(frozen=True)
class NodeAccess:
    """How fast node N's memory is from its best initiators (HMAT access class 0)."""
    initiators: frozenset[int]
    read_latency_ns: int | None = None
    write_latency_ns: int | None = None
    read_bandwidth_mib_s: int | None = None
    write_bandwidth_mib_s: int | None = None

    def to_dict(self) -> dict:
        return {
            "initiators": format_nodes(self.initiators),
            "read_latency_ns": self.read_latency_ns,
            "write_latency_ns": self.write_latency_ns,
            "read_bandwidth_mib_s": self.read_bandwidth_mib_s,
            "write_bandwidth_mib_s": self.write_bandwidth_mib_s,
        }


@dataclass(frozen=True)
class Topology:
    nodes: tuple[Node, ...]
    distances: dict[tuple[int, int], int]
    # node -> memory tier id (higher = slower); empty when the kernel has no tiers.
    tiers: dict[int, int] = field(default_factory=dict)
    # node -> HMAT access performance; only nodes the firmware describes.
    access: dict[int, NodeAccess] = field(default_factory=dict)

    def tier_of(self, node_id: int) -> int | None:
        return self.tiers.get(node_id)

    @property
    def memory_tiers(self) -> list[tuple[int, frozenset[int]]]:
        """(tier, nodes) from the fastest tier to the slowest."""
        by_tier: dict[int, set[int]] = {}
        for node, tier in self.tiers.items():
            by_tier.setdefault(tier, set()).add(node)
        return [(tier, frozenset(by_tier[tier])) for tier in sorted(by_tier)]

    @property
    def slow_tier_nodes(self) -> frozenset[int]:
        """Nodes below the fastest tier (demotion targets); empty with one tier."""
        tiers = self.memory_tiers
        return frozenset().union(*(nodes for _, nodes in tiers[1:])) if len(tiers) > 1 else frozenset()

    @property
    def node_ids(self) -> frozenset[int]:
        return frozenset(n.id for n in self.nodes)

    @property
    def memory_nodes(self) -> frozenset[int]:
        return frozenset(n.id for n in self.nodes if n.has_memory)

    @property
    def memory_only_nodes(self) -> frozenset[int]:
        return frozenset(n.id for n in self.nodes if n.has_memory and not n.has_cpu)

    def node(self, node_id: int) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def cpus_of(self, node_ids) -> frozenset[int]:
        return frozenset().union(*(self.node(i).cpus for i in node_ids)) if node_ids else frozenset()

    def to_dict(self) -> dict:
        return {
            "nodes": [
                {
                    "id": n.id,
                    "cpus": format_nodes(n.cpus),
                    "mem_total_bytes": n.mem_total,
                    "mem_free_bytes": n.mem_free,
                    "memory_only": n.has_memory and not n.has_cpu,
                    "memory_tier": self.tiers.get(n.id),
                    "access": self.access[n.id].to_dict() if n.id in self.access else None,
                }
                for n in self.nodes
            ],
            "memory_tiers": [{"tier": tier, "nodes": format_nodes(nodes)} for tier, nodes in self.memory_tiers],
            "distances": {
                str(a): {str(b): self.distances[(a, b)] for b in sorted(self.node_ids)}
                for a in sorted(self.node_ids)
            },
        }


def read_topology(sys_root: str | Path = "/sys") -> Topology:
    base = Path(sys_root) / NODE_DIR
    online = parse_nodes((base / "online").read_text())
    nodes = tuple(_read_node(base / f"node{i}", i) for i in sorted(online))
    distances: dict[tuple[int, int], int] = {}
    for node in nodes:
        row = (base / f"node{node.id}" / "distance").read_text().split()
        # The distance row is indexed by position among *online* nodes.
        for other, value in zip(sorted(online), row):
            distances[(node.id, other)] = int(value)
    ids = {n.id for n in nodes}
    return Topology(nodes=nodes, distances=distances,
                    tiers={n: t for n, t in read_memory_tiers(sys_root).items() if n in ids},
                    access={n.id: a for n in nodes if (a := _read_access(base / f"node{n.id}")) is not None})


def read_memory_tiers(sys_root: str | Path = "/sys") -> dict[int, int]:
    """node -> memory tier id from ``memory_tierN/nodelist``; {} on a kernel without tiers."""
    tiers: dict[int, int] = {}
    try:
        entries = sorted((Path(sys_root) / TIER_DIR).iterdir())
    except FileNotFoundError:
        return tiers
    for entry in entries:
        m = _TIER_NAME.match(entry.name)
        if not m:
            continue
        try:
            nodes = parse_cpulist((entry / "nodelist").read_text())  # same grammar; may be empty
        except FileNotFoundError:
            continue
        for node in nodes:
            tiers[node] = int(m.group(1))
    return tiers


def _read_access(node_dir: Path) -> NodeAccess | None:
    initiators_dir = node_dir / "access0" / "initiators"
    try:
        names = [p.name for p in initiators_dir.iterdir()]
    except FileNotFoundError:
        return None

    def number(name: str) -> int | None:
        try:
            return int((initiators_dir / name).read_text())
        except (FileNotFoundError, ValueError):
            return None

    return NodeAccess(
        initiators=frozenset(int(m.group(1)) for n in names if (m := _INITIATOR_LINK.match(n))),
        read_latency_ns=number("read_latency"),
        write_latency_ns=number("write_latency"),
        read_bandwidth_mib_s=number("read_bandwidth"),
        write_bandwidth_mib_s=number("write_bandwidth"),
    )


def _read_meminfo(path: str | Path) -> tuple[int, int]:
    """(MemTotal, MemFree) in bytes from a node's ``meminfo`` (``Node 0 MemFree:  123 kB``).

    Two searches in the bytes, not a parse of its ~30 lines: the daemon reads every node's
    file every scan."""
    with open(f"{path}/meminfo", "rb") as f:
        text = f.read()
    return _kib(text, b" MemTotal:") * 1024, _kib(text, b" MemFree:") * 1024


def _kib(meminfo: bytes, key: bytes) -> int:
    at = meminfo.find(key)
    value = meminfo[at + len(key):at + len(key) + 40].split(None, 1) if at >= 0 else []
    return int(value[0]) if value and value[0].isdigit() else 0


def read_node_memory(node_id: int, sys_root: str | Path = "/sys") -> tuple[int, int]:
    """(MemTotal, MemFree) of one node, in bytes: what changes between two scans."""
    return _read_meminfo(f"{sys_root}/{NODE_DIR}/node{node_id}")


def _read_node(path: Path, node_id: int) -> Node:
    mem_total, mem_free = _read_meminfo(path)
    return Node(id=node_id, cpus=parse_cpulist((path / "cpulist").read_text()),
                mem_total=mem_total, mem_free=mem_free)


def online_nodes(sys_root: str | Path = "/sys") -> frozenset[int]:
    return parse_nodes((Path(sys_root) / NODE_DIR / "online").read_text())
