"""Pre-placement advice: where a NEW workload of N CPUs and M bytes fits best now.

What libvirt asks ``numad -w NCPUS:MB`` before it starts a VM.  PURE: the
caller passes a snapshot of the nodes and what was advised moments ago
(``reserved``), so two VMs started together are not sent to the same node.

* Only nodes with CPUs are candidates (a memory-only node runs no vCPU).
* A node's room: idle CPUs = cpus × (1 − load), free bytes = MemFree − reserved.
* One node that fits wins, best score first (most free memory, least load).
* Otherwise nodes are added nearest-first (SLIT distance from the best node)
  until the set fits; if even every CPU node together does not fit, the
  answer is every CPU node, said so in the reasons (numad does the same).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .auto import LOAD_WEIGHT, LOCAL_DISTANCE
from .snapshot import NodeInfo, Snapshot


@dataclass(frozen=True)
class Reservation:
    """What an earlier advice promised a node, until it expires."""

    cpus: float = 0.0
    bytes: int = 0


@dataclass(frozen=True)
class NodeRoom:
    node: int
    idle_cpus: float
    free_bytes: int
    score: float


@dataclass(frozen=True)
class Advice:
    nodes: frozenset[int]
    fits: bool
    reasons: tuple[str, ...]
    rooms: tuple[NodeRoom, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "nodes": sorted(self.nodes),
            "fits": self.fits,
            "reasons": list(self.reasons),
            "candidates": [{"node": r.node, "idle_cpus": round(r.idle_cpus, 2), "free_bytes": r.free_bytes,
                            "score": round(r.score, 3)} for r in self.rooms],
        }


class ReservationBook:
    """What recent advice promised, per node, until it expires.

    PURE: the caller passes ``now``.  libvirt asks once per VM and starts the VM
    right after, so an advised VM's memory and CPUs are not yet visible when the
    next VM asks; a reservation stands in for them for ``ttl`` seconds.  At most
    ``limit`` are kept (the oldest go first), so a loop of requests cannot grow it.
    """

    def __init__(self, ttl: float = 30.0, limit: int = 256):
        self.ttl = ttl
        self.limit = limit
        self._entries: list[tuple[float, frozenset[int], float, int]] = []  # expires, nodes, cpus, bytes

    def add(self, nodes: frozenset[int], cpus: float, memory: int, now: float) -> None:
        """Reserve a workload's CPUs and bytes, spread evenly over ``nodes``."""
        if not nodes:
            return
        self._entries.append((now + self.ttl, frozenset(nodes), float(cpus), int(memory)))
        del self._entries[:-self.limit]

    def active(self, now: float) -> dict[int, Reservation]:
        self._entries = [e for e in self._entries if e[0] > now]
        cpus: dict[int, float] = {}
        mem: dict[int, int] = {}
        for _expires, nodes, n_cpus, n_bytes in self._entries:
            for node in nodes:
                cpus[node] = cpus.get(node, 0.0) + n_cpus / len(nodes)
                mem[node] = mem.get(node, 0) + n_bytes // len(nodes)
        return {node: Reservation(cpus=cpus[node], bytes=mem[node]) for node in cpus}


def room_of(node: NodeInfo, *, load: float, reserved: Reservation) -> NodeRoom:
    idle = max(0.0, len(node.cpus) * (1.0 - load) - reserved.cpus)
    free = max(0, node.mem_free - reserved.bytes)
    free_fraction = free / node.mem_total if node.mem_total > 0 else 0.0
    return NodeRoom(node.id, idle, free, free_fraction - LOAD_WEIGHT * load)


def advise(snapshot: Snapshot, *, cpus: int, memory: int = 0,
           reserved: Mapping[int, Reservation] | None = None,
           allowed: frozenset[int] | None = None) -> Advice:
    """The node set for a workload of ``cpus`` CPUs and ``memory`` bytes."""
    reserved = reserved or {}
    rooms = sorted(
        (room_of(n, load=snapshot.cpu_load.get(n.id, 0.0), reserved=reserved.get(n.id, Reservation()))
         for n in snapshot.nodes
         if n.has_cpu and (allowed is None or n.id in allowed)),
        key=lambda r: (-r.score, r.node),
    )
    if not rooms:
        return Advice(frozenset(), False, ("no node with CPUs is available",))
    want = f"{cpus} CPU(s)" + (f" and {_mib(memory)}" if memory else "")
    for room in rooms:
        if _fits([room], cpus, memory):
            return Advice(frozenset({room.node}), True, (
                f"node {room.node} alone fits {want}: {room.idle_cpus:.1f} idle CPU(s), "
                f"{_mib(room.free_bytes)} free, score {room.score:.2f} (best of {len(rooms)})",), tuple(rooms))
    best = rooms[0]
    chosen = [best]
    rest = sorted(rooms[1:], key=lambda r: (snapshot.distances.get((best.node, r.node), LOCAL_DISTANCE),
                                            -r.score, r.node))
    reasons = [f"no single node fits {want}; starting from node {best.node} (best score {best.score:.2f})"]
    for room in rest:
        if _fits(chosen, cpus, memory):
            break
        chosen.append(room)
        reasons.append(f"added node {room.node} (distance "
                       f"{snapshot.distances.get((best.node, room.node), LOCAL_DISTANCE)}, "
                       f"{room.idle_cpus:.1f} idle CPU(s), {_mib(room.free_bytes)} free)")
    fits = _fits(chosen, cpus, memory)
    if not fits:
        reasons.append(f"even nodes {', '.join(str(r.node) for r in chosen)} together do not fit {want}: "
                       "advising all of them")
    return Advice(frozenset(r.node for r in chosen), fits, tuple(reasons), tuple(rooms))


def _fits(rooms: list[NodeRoom], cpus: int, memory: int) -> bool:
    # Idle CPUs are fractional; a workload needing N CPUs wants N whole ones (a little slack).
    return sum(r.idle_cpus for r in rooms) + 0.05 >= cpus and sum(r.free_bytes for r in rooms) >= memory


def _mib(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):.0f} MiB"
