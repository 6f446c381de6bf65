"""The planner's output: what to do to which process, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from collections.abc import Iterator, Mapping

from ..nodes import format_nodes
from .snapshot import Identity

Kind = Literal["migrate", "pin", "advise"]
KIND_ORDER: Mapping[str, int] = {"migrate": 0, "pin": 1, "advise": 2}


@dataclass(frozen=True)
class Action:
    kind: Kind
    pid: int
    start_time: float
    comm: str
    rule: str
    target_nodes: frozenset[int]
    memory: str | tuple[str, ...] = "all"   # "all" or the rule's mapping selectors
    move_all: bool = False
    from_nodes: frozenset[int] = frozenset()  # nodes holding misplaced bytes
    misplaced_bytes: int = 0
    reason: str = ""
    numa_balancing: bool | None = None       # the rule's wish (False = balancing off); reported, not enforced
    # (node, weight) pairs: place page i on the weighted round-robin's node (interleave policies);
    # empty = any target node will do
    weights: tuple[tuple[int, int], ...] = ()
    # Tier moves (decide/tiering.py): "fast" (promote) or "slow" (demote), the address ranges,
    # and the measured access that justifies the move.
    tier: str | None = None
    ranges: tuple[tuple[int, int], ...] = ()
    access: Mapping[str, float] | None = None

    @property
    def identity(self) -> Identity:
        return (self.pid, self.start_time)

    def to_dict(self) -> dict:
        out = self._base_dict()
        if self.tier is not None:
            out.update(tier=self.tier, ranges=[f"{s:#x}-{e:#x}" for s, e in self.ranges],
                       access=dict(self.access or {}))
        return out

    def _base_dict(self) -> dict:
        return {
            "kind": self.kind,
            "pid": self.pid,
            "start_time": self.start_time,
            "comm": self.comm,
            "rule": self.rule,
            "target_nodes": format_nodes(self.target_nodes),
            "memory": self.memory if isinstance(self.memory, str) else list(self.memory),
            "move_all": self.move_all,
            "from_nodes": format_nodes(self.from_nodes),
            "misplaced_bytes": self.misplaced_bytes,
            "numa_balancing": self.numa_balancing,
            "weights": {str(n): w for n, w in self.weights},
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Plan:
    """Actions in a deterministic order, plus which rule each candidate matched.

    ``matched`` covers every candidate, acted on or not, so the daemon can
    keep its history (first sight) without matching again.
    """

    actions: tuple[Action, ...] = ()
    matched: Mapping[Identity, str] = field(default_factory=dict)
    inactive: Mapping[str, str] = field(default_factory=dict)   # rule -> why it cannot act on this machine
    checked: frozenset[Identity] = frozenset()   # due by `every` this tick: its next check is `every` later

    def __iter__(self) -> Iterator[Action]:
        return iter(self.actions)

    def __len__(self) -> int:
        return len(self.actions)
