"""What the daemon remembers between ticks, as plain data, and the views built from it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..act.executor import Outcome
from ..decide.history import History
from ..decide.tiering import tier_bytes

RECENT_OUTCOMES = 50


@dataclass
class DaemonState:
    """Handed to the planner (history) and shown by status and the metrics."""

    history: History = field(default_factory=dict)
    advised: dict = field(default_factory=dict)       # identity -> node set last advised
    recent: list[dict] = field(default_factory=list)   # the last outcomes, as status.json shows them
    errors: list[str] = field(default_factory=list)
    ticks: int = 0
    last_tick: float | None = None
    last_reload: float | None = None
    managed: dict[str, int] = field(default_factory=dict)  # rule -> processes matched
    metrics_view: dict | None = None                  # the collector's view of the last scan

    def remember(self, outcome: Outcome) -> None:
        # Encoded once here, not at every status write: that was 4 % of a steady tick's CPU
        # (cProfile, the numad bench's busy workload placed, in the guest).
        self.recent = (self.recent + [outcome.to_dict()])[-RECENT_OUTCOMES:]


def count_by_rule(rule_names) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in rule_names:
        counts[name] = counts.get(name, 0) + 1
    return counts


def rule_view(snapshot, plan, config) -> dict:
    """Per rule: processes managed and their resident bytes by node, from the last snapshot.

    ``numa_balancing`` is the kernel's mode, reported as read: a rule cannot switch it off
    for one process (there is no per-process opt-out to call), so it is only shown.
    """
    inactive = getattr(plan, "inactive", {}) or {}
    rules: dict[str, dict] = {r.name: {"processes": 0, "resident_bytes": {}, "inactive": inactive.get(r.name)}
                              for r in config.rules}
    by_identity = {p.identity: p for p in snapshot.processes}
    for identity, rule_name in plan.matched.items():
        entry = rules.setdefault(rule_name, {"processes": 0, "resident_bytes": {}})
        entry["processes"] += 1
        proc = by_identity.get(identity)
        for node, nbytes in ((proc.residency or {}).items() if proc else ()):
            entry["resident_bytes"][node] = entry["resident_bytes"].get(node, 0) + nbytes
        rule = next((r for r in config.rules if r.name == rule_name), None)
        if proc is not None and rule is not None and rule.tier is not None:   # numad_tier_bytes
            for tier, nbytes in tier_bytes(proc, rule, snapshot).items():
                entry.setdefault("tier_bytes", {})[tier] = entry.get("tier_bytes", {}).get(tier, 0) + nbytes
    return {"time": snapshot.time, "numa_balancing": snapshot.numa_balancing,
            "processes": len(plan.matched), "rules": rules}
