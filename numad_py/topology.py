"""The machine's NUMA layout from sysfs: nodes, CPUs, memory, distances.

Reads ``/sys/devices/system/node`` under an injectable root so tests can
hand it a literal tree.  Memory-only (CPU-less) nodes are first-class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .nodes import format_nodes, parse_cpulist, parse_nodes

NODE_DIR = "devices/system/node"
_MEMINFO_LINE = re.compile(r"Node \d+ (\w+):\s+(\d+) kB")


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
class Topology:
    nodes: tuple[Node, ...]
    distances: dict[tuple[int, int], int]

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
                }
                for n in self.nodes
            ],
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
    return Topology(nodes=nodes, distances=distances)


def _read_node(path: Path, node_id: int) -> Node:
    meminfo = {}
    for line in (path / "meminfo").read_text().splitlines():
        m = _MEMINFO_LINE.match(line)
        if m:
            meminfo[m.group(1)] = int(m.group(2)) * 1024
    return Node(
        id=node_id,
        cpus=parse_cpulist((path / "cpulist").read_text()),
        mem_total=meminfo.get("MemTotal", 0),
        mem_free=meminfo.get("MemFree", 0),
    )


def online_nodes(sys_root: str | Path = "/sys") -> frozenset[int]:
    return parse_nodes((Path(sys_root) / NODE_DIR / "online").read_text())
