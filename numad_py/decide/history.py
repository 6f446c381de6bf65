"""What the daemon remembers per process between ticks, as plain data.

The planner reads it; :func:`record` builds the next one from a plan and
what the executor managed to do.  Entries of processes that are gone or no
longer match any rule are dropped, so it stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from collections.abc import Iterable, Mapping

from .actions import Action, Plan
from .snapshot import Identity


@dataclass(frozen=True)
class ProcessHistory:
    first_seen: float
    last_action: float | None = None  # last attempt, successful or not
    last_checked: float | None = None  # last time `every` made it due, acted on or not
    handled_once: bool = False        # an action completed: `once` is satisfied
    unmovable_bytes: int = 0          # misplaced bytes the last migration could not move
    # Tier moves done: (start, end, tier, when), newest last, at most TIER_MOVES_KEPT (hysteresis).
    tier_moves: tuple[tuple[int, int, str, float], ...] = ()


TIER_MOVES_KEPT = 256


History = Mapping[Identity, ProcessHistory]


def record(
    history: History,
    plan: Plan,
    now: float,
    *,
    attempted: Iterable[Action] = (),
    completed: Iterable[Action] = (),
    unmovable: Mapping[Identity, int] | None = None,
) -> dict[Identity, ProcessHistory]:
    """The history after ``plan`` ran at ``now``: ``completed`` ⊆ actions that fully worked.

    ``unmovable``: bytes a completed migration left behind because the kernel
    refused them (shared pages without move-all...); re-enforcement then acts
    only when more than that has drifted, instead of retrying them forever.
    """
    nxt = {ident: history.get(ident) or ProcessHistory(first_seen=now) for ident in plan.matched}
    for ident in plan.checked:
        if ident in nxt:
            nxt[ident] = replace(nxt[ident], last_checked=now)
    for action in attempted:
        if action.identity in nxt:
            nxt[action.identity] = replace(nxt[action.identity], last_action=now)
    for action in completed:
        if action.identity in nxt:
            nxt[action.identity] = replace(nxt[action.identity], last_action=now, handled_once=True)
    for action in completed:
        if action.tier is not None and action.identity in nxt:
            entry = nxt[action.identity]
            moves = entry.tier_moves + tuple((s, e, action.tier, now) for s, e in action.ranges)
            nxt[action.identity] = replace(entry, tier_moves=moves[-TIER_MOVES_KEPT:])
    for identity, nbytes in (unmovable or {}).items():
        if identity in nxt:
            nxt[identity] = replace(nxt[identity], unmovable_bytes=nbytes)
    return nxt
