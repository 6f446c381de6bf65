"""Tier moves from measured access: PURE (no OS imports), one process at a time.

For a process whose rule has ``tier = {fast, slow, ...}`` and DAMON's regions
(``snapshot.access``, see sense/damon.py), each region is

* **cold** when no sample saw an access for at least ``cold_after`` (DAMON's
  age counts the aggregation intervals the count stayed the same): the part
  of it not yet on a slow node is *demoted* to the slow node(s);
* **hot** when at least ``hot_min`` of the samples saw an access, at two
  measurements in a row (``hot_streak``: a region DAMON has not split yet is
  partly hot for one look, and would be promoted whole), four at the edge of a
  hot run (``hot_edge``: DAMON's boundaries wander by a few MiB there, and the
  cold 2 MiB next to a hot range was promoted, then demoted again): the part
  of it on a slow node is *promoted* to the fast node the process runs on;
* anything between stays where it is.

Hysteresis, so a range does not ping-pong: besides that band, a range is not
moved the opposite way of the last move of an overlapping range sooner than
``dwell``, doubled for every earlier move of it (``ProcessHistory.tier_moves``);
and cold also needs the sensor's own idle time (``idle_seconds``), since
DAMON's age keeps growing while a count flickers between 0 and 1.  Cap: after the moves at most
``max_slow_share`` of the process's resident memory sits on slow nodes;
the coldest (oldest) regions go first, the rest stays and is reported.

Adjacent regions with the same move become one ``migrate`` action whose
``ranges`` name the addresses and whose ``access`` says why (frequency,
idle/hot age, bytes): ``plan --json`` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config.models import Rule, Tier
from ..nodes import format_nodes
from ..units import format_size
from . import nodesets
from .actions import Action
from .history import ProcessHistory
from .snapshot import ProcessAccess, ProcessInfo, RegionAccess, Snapshot

FAST, SLOW = "fast", "slow"
HOT_STREAK = 2     # measurements in a row a region must look hot to be promoted
EDGE_STREAK = 4    # ... at the edge of a hot run, where DAMON's boundaries wander


@dataclass(frozen=True)
class Move:
    """One region's planned move (before merging)."""

    region: RegionAccess
    tier: str                 # FAST (promote) or SLOW (demote)
    nbytes: int               # estimated bytes that would move
    frequency: float          # share of samples that saw an access
    age_seconds: float


def tier_actions(proc: ProcessInfo, rule: Rule, snapshot: Snapshot,
                 entry: ProcessHistory | None) -> list[Action]:
    """The tier moves ``proc`` needs under ``rule`` now (possibly none), or one advice."""
    tier = rule.tier
    assert tier is not None
    allowed = snapshot.node_ids if proc.mems_allowed is None else snapshot.node_ids & proc.mems_allowed
    fast = nodesets.resolve(tier.fast, snapshot) & allowed
    slow = nodesets.resolve(tier.slow, snapshot) & allowed
    if not fast or not slow:
        which = "fast" if not fast else "slow"
        return [_advice(proc, rule, f"no usable {which} node ({getattr(tier, which)!r}); not tiering")]
    access = snapshot.access.get(proc.identity)
    if access is None:
        return [_advice(proc, rule, "no DAMON measurement of it yet; tiering starts after the first one")]
    home = home_node(proc, snapshot, fast)
    wanted = classify(access, tier, slow, entry.tier_moves if entry is not None else (), snapshot.time)
    moves, held = apply_cap(wanted, proc, slow, tier.max_slow_share)
    groups = sorted(merge(moves), key=lambda g: g[0].tier != FAST)    # promotions first: latency
    actions = [_migrate(proc, rule, group, home if group[0].tier == FAST else slow, access) for group in groups]
    if held:
        actions.append(_advice(proc, rule, f"{format_size(held)} of cold memory stays on fast nodes: "
                               f"max_slow_share {tier.max_slow_share:.0%} reached"))
    return actions


def home_node(proc: ProcessInfo, snapshot: Snapshot, fast: frozenset[int]) -> int:
    """The fast node the process runs on: one whose CPUs it may use; of several, the one
    holding most of its memory (then the lowest id)."""
    runs_on = frozenset(n for n in fast if proc.cpu_affinity is None
                        or snapshot.cpus_of(frozenset({n})) & proc.cpu_affinity) or fast
    residency = proc.residency or {}
    return min(runs_on, key=lambda n: (-residency.get(n, 0), n))


def classify(access: ProcessAccess, tier: Tier, slow: frozenset[int],
             moves_done: tuple[tuple[int, int, str, float], ...] = (), now: float = 0.0) -> list[Move]:
    """Each region's move, if it needs one and no recent opposite move holds it back."""
    aggr_seconds = access.aggr_us / 1e6
    moves = []
    for region in access.regions:
        frequency = region.nr_accesses / access.max_accesses
        age_seconds = region.age * aggr_seconds
        on_slow = sum(b for n, b in region.nodes.items() if n in slow)
        off_slow = sum(b for n, b in region.nodes.items() if n not in slow)
        idle = region.idle_seconds is None or region.idle_seconds >= tier.cold_after
        needed = EDGE_STREAK if region.hot_edge else HOT_STREAK
        steady = region.hot_streak is None or region.hot_streak >= needed
        if region.nr_accesses == 0 and age_seconds >= tier.cold_after and idle and off_slow > 0:
            move = Move(region, SLOW, off_slow, frequency, age_seconds)
        elif frequency >= tier.hot_min and region.nr_accesses > 0 and on_slow > 0 and steady:
            move = Move(region, FAST, on_slow, frequency, age_seconds)
        else:
            continue
        if not held_back(move, moves_done, now, tier.dwell):
            moves.append(move)
    return moves


def held_back(move: Move, moves_done: tuple[tuple[int, int, str, float], ...], now: float, dwell: float) -> bool:
    """True while the last move of an overlapping range went the other way less than
    ``dwell × 2^reversals`` ago (reversals: direction changes among the overlapping moves
    remembered, the last one included minus one): each reversal doubles the wait, so an
    ambiguous range settles instead of ping-ponging.  Repeated moves the same way (pages
    left behind) do not count; such a retry waits ``dwell`` (the kernel refused those pages:
    shared, busy)."""
    r = move.region
    overlapping = sorted((when, t) for s, e, t, when in moves_done if s < r.end and r.start < e)
    if not overlapping:
        return False
    if overlapping[-1][1] == move.tier:     # tried this very move: what stayed behind was refused
        return now - overlapping[-1][0] < dwell
    reversals = sum(1 for (_w0, a), (_w1, b) in zip(overlapping, overlapping[1:]) if a != b)
    return now - overlapping[-1][0] < dwell * 2 ** reversals


def apply_cap(moves: list[Move], proc: ProcessInfo, slow: frozenset[int],
              max_slow_share: float) -> tuple[list[Move], int]:
    """Promotions all; demotions coldest first while slow bytes stay within the cap.
    Returns the moves kept (in address order) and the cold bytes held back."""
    residency = proc.residency or {}
    total = sum(residency.values())
    on_slow = sum(b for n, b in residency.items() if n in slow)
    promotions = [m for m in moves if m.tier == FAST]
    room = max_slow_share * total - on_slow + sum(m.nbytes for m in promotions)
    kept, held = list(promotions), 0
    for move in sorted((m for m in moves if m.tier == SLOW), key=lambda m: (-m.age_seconds, m.region.start)):
        if move.nbytes <= room:
            kept.append(move)
            room -= move.nbytes
        else:
            held += move.nbytes
    return sorted(kept, key=lambda m: m.region.start), held


def merge(moves: list[Move]) -> list[list[Move]]:
    """Runs of address-adjacent moves to the same tier (``moves`` in address order)."""
    groups: list[list[Move]] = []
    for move in moves:
        last = groups[-1][-1] if groups else None
        if last is not None and last.tier == move.tier and last.region.end == move.region.start:
            groups[-1].append(move)
        else:
            groups.append([move])
    return groups


def _migrate(proc: ProcessInfo, rule: Rule, group: list[Move], target: int | frozenset[int],
             access: ProcessAccess) -> Action:
    tier = group[0].tier
    targets = frozenset({target}) if isinstance(target, int) else target
    start, end = group[0].region.start, group[-1].region.end
    nbytes = sum(m.nbytes for m in group)
    frequency = max(m.frequency for m in group) if tier == FAST else 0.0
    age = min(m.age_seconds for m in group)
    if tier == SLOW:
        why = f"not accessed for {age:.1f}s (cold_after {rule.tier.cold_after:g}s)"  # type: ignore[union-attr]
        verb = "demote"
    else:
        why = f"accessed in {frequency:.0%} of samples (hot_min {rule.tier.hot_min:.0%})"  # type: ignore[union-attr]
        verb = "promote"
    from_nodes = frozenset(n for m in group for n, b in m.region.nodes.items() if b > 0 and n not in targets)
    reason = (f"rule {rule.name!r}: {verb} {format_size(nbytes)} of {start:#x}-{end:#x} "
              f"({len(group)} region(s)) to node {format_nodes(targets)}: {why}")
    return Action(
        kind="migrate", pid=proc.pid, start_time=proc.start_time, comm=proc.comm, rule=rule.name,
        target_nodes=targets, memory=tuple(f"{m.region.start:#x}-{m.region.end:#x}" for m in group),
        move_all=rule.move_all, from_nodes=from_nodes, misplaced_bytes=nbytes, reason=reason,
        tier=tier, ranges=tuple((m.region.start, m.region.end) for m in group),
        access={"frequency": round(frequency, 4), "nr_accesses": max(m.region.nr_accesses for m in group),
                "max_accesses": access.max_accesses, "age_seconds": round(age, 3), "bytes": nbytes,
                "region_bytes": end - start, "regions": len(group)},
    )


def _advice(proc: ProcessInfo, rule: Rule, text: str) -> Action:
    return Action(kind="advise", pid=proc.pid, start_time=proc.start_time, comm=proc.comm, rule=rule.name,
                  target_nodes=frozenset(), reason=f"rule {rule.name!r}: {text}")


def tier_bytes(proc: ProcessInfo, rule: Rule, snapshot: Snapshot) -> dict[str, int]:
    """Resident bytes of ``proc`` on its rule's fast and slow nodes (for metrics and status)."""
    tier = rule.tier
    if tier is None or proc.residency is None:
        return {}
    fast = nodesets.resolve(tier.fast, snapshot)
    slow = nodesets.resolve(tier.slow, snapshot)
    return {FAST: sum(b for n, b in proc.residency.items() if n in fast),
            SLOW: sum(b for n, b in proc.residency.items() if n in slow)}
