"""``nodes = "auto"``: pick the best single node for a process.

score(node) = free_fraction - LOAD_WEIGHT * cpu_load - DISTANCE_WEIGHT * (distance / 10 - 1)

* free_fraction: MemFree / MemTotal of the node (0..1);
* cpu_load: how busy the node's CPUs are (0..1), from the snapshot;
* distance: from the process's *home* (the node holding most of its
  memory) to the candidate, in SLIT units where 10 is local; moving far
  costs more and helps less.

Only nodes with CPUs are candidates: a process runs on CPUs, and a memory-only
node (a CXL-like expander, usually a lower memory tier) is remote to all of them;
it scores well on free memory and no load exactly because nothing runs there.
Moving memory there is for tier rules and rules that name the node.

A node must have room for the bytes that would move.  The home node is
kept unless another beats it by STAY_MARGIN: automatic placement tends to
move the wrong things, so small gains are not worth a migration.  Several
processes chosen in one tick see each other's choices: the planner hands
the next choice a snapshot where the chosen node holds the process's memory
and its threads' CPU (``planner.claim``).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping

from .snapshot import NodeInfo, ProcessInfo, Snapshot

LOAD_WEIGHT = 0.5
DISTANCE_WEIGHT = 0.1
STAY_MARGIN = 0.1
LOCAL_DISTANCE = 10


@dataclass(frozen=True)
class AutoChoice:
    node: int
    score: float
    why: str  # the numbers behind the choice, for the action's reason


def score_node(node: NodeInfo, *, load: float, distance: int) -> float:
    free_fraction = node.mem_free / node.mem_total if node.mem_total > 0 else 0.0
    return free_fraction - LOAD_WEIGHT * load - DISTANCE_WEIGHT * (distance / LOCAL_DISTANCE - 1)


def home_node(residency: Mapping[int, int] | None) -> int | None:
    """The node holding most of the process's bytes (lowest id on ties); None if unknown."""
    if not residency or not any(residency.values()):
        return None
    return min(residency, key=lambda n: (-residency[n], n))


def choose_node(snapshot: Snapshot, proc: ProcessInfo, candidates: frozenset[int]) -> AutoChoice | None:
    """The best node with CPUs among ``candidates`` for ``proc``; None when no node qualifies."""
    residency = proc.residency or {}
    home = home_node(residency)
    scored: list[tuple[float, int]] = []
    for node in snapshot.nodes:
        if node.id not in candidates or node.mem_total <= 0 or not node.has_cpu:
            continue
        incoming = sum(residency.values()) - residency.get(node.id, 0)
        if node.mem_free < incoming:
            continue
        load = snapshot.cpu_load.get(node.id, 0.0)
        scored.append((score_node(node, load=load, distance=_distance(snapshot, home, node.id)), node.id))
    if not scored:
        return None
    best_score, best = max(scored, key=lambda s: (s[0], -s[1]))
    home_score = next((score for score, node_id in scored if node_id == home), None)
    if home is not None and home_score is not None and best_score - home_score < STAY_MARGIN:
        best_score, best = home_score, home
    node = snapshot.node(best)
    why = (
        f"auto chose node {best} (score {best_score:.2f}: {node.mem_free / node.mem_total:.0%} free, "
        f"CPU load {snapshot.cpu_load.get(best, 0.0):.2f}, distance {_distance(snapshot, home, best)} "
        f"from home node {'unknown' if home is None else home})"
    )
    return AutoChoice(node=best, score=best_score, why=why)


def _distance(snapshot: Snapshot, home: int | None, node_id: int) -> int:
    """SLIT distance from home; local when the home is unknown or the table lacks the pair."""
    if home is None:
        return LOCAL_DISTANCE
    return snapshot.distances.get((home, node_id), LOCAL_DISTANCE)
