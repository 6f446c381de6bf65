"""Node sets that mean the same on every machine, on literal snapshots of four host shapes,
and the rules they make inactive where a set is empty."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pydantic import ValidationError

from numad_py.config import Rule
from numad_py.decide.nodesets import resolve
from numad_py.decide.planner import inactive_rules, plan

from decide_literals import GiB, MEMONLY2, NODE0, NODE1, config, proc, snap

ONE = (NODE0,)
TWO = (NODE0, NODE1)
MEMONLY = (NODE0, NODE1, MEMONLY2)
TIERED = (replace(NODE0, tier=4), replace(NODE1, tier=4), replace(MEMONLY2, tier=72))

# (set, {shape: expected nodes})
CASES = [
    ("cpu", {ONE: {0}, TWO: {0, 1}, MEMONLY: {0, 1}, TIERED: {0, 1}}),
    ("memory-only", {ONE: set(), TWO: set(), MEMONLY: {2}, TIERED: {2}}),
    ("fast-tier", {ONE: {0}, TWO: {0, 1}, MEMONLY: {0, 1, 2}, TIERED: {0, 1}}),   # no tiers known: all fast
    ("slow-tier", {ONE: set(), TWO: set(), MEMONLY: set(), TIERED: {2}}),
    ("all", {ONE: {0}, TWO: {0, 1}, MEMONLY: {0, 1, 2}, TIERED: {0, 1, 2}}),
    ("1", {ONE: set(), TWO: {1}, MEMONLY: {1}, TIERED: {1}}),
    ("0-3", {ONE: {0}, TWO: {0, 1}, MEMONLY: {0, 1, 2}, TIERED: {0, 1, 2}}),
]


@pytest.mark.parametrize("spec, expected", CASES, ids=[c[0] for c in CASES])
def test_sets_on_every_shape(spec, expected):
    for nodes, want in expected.items():
        assert resolve(spec, snap(nodes=nodes)) == frozenset(want), (spec, [n.id for n in nodes])


def test_a_rule_whose_set_is_empty_here_is_inactive_and_plans_nothing():
    rules = [{"name": "cxl", "match": {"comm": "postgres"}, "nodes": "memory-only"},
             {"name": "cpus", "match": {"comm": "nginx"}, "nodes": "cpu"}]
    cfg = config(*rules)
    one = snap(proc(residency={0: GiB}), proc(pid=101, comm="nginx", residency={0: GiB}), nodes=ONE)
    assert inactive_rules(cfg.rules, one) == {"cxl": "inactive here: this machine has no memory-only node"}
    result = plan(one, cfg, {})
    assert result.inactive.keys() == {"cxl"}
    assert [a.rule for a in result] == []                      # nginx is on node 0 already: placed
    assert set(result.matched.values()) == {"cxl", "cpus"}     # still matched (history), never acted on
    memonly = snap(proc(residency={0: GiB}), nodes=MEMONLY)
    moved = plan(memonly, cfg, {})
    assert not moved.inactive
    assert [(a.kind, sorted(a.target_nodes)) for a in moved] == [("migrate", [2])]
    assert "the rule's memory-only set" in moved.actions[0].reason


def test_fleet_rules_may_name_nodes_this_host_lacks_and_others_may_not():
    rule = {"name": "n3", "match": {"comm": "postgres"}, "nodes": "3"}
    here = {"online_nodes": frozenset({0, 1})}
    with pytest.raises(ValidationError, match="fleet = true"):
        Rule.model_validate(rule, context=here)
    fleet = Rule.model_validate({**rule, "fleet": True}, context=here)
    assert inactive_rules([fleet], snap(nodes=TWO)) == {"n3": "inactive here: this machine has none of nodes 3"}


def test_literal_lists_without_fleet_are_never_inactive():
    cfg = config({"match": {"comm": "postgres"}, "nodes": "1"})
    assert inactive_rules(cfg.rules, snap(nodes=ONE)) == {}
