"""A rule's policy table: validation messages (FILE:LINE) and what the planner makes of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from numad_py.config import ConfigError, load_config
from numad_py.decide.planner import plan
from decide_literals import MiB, config, proc, snap

UNSUPPORTED = {"weighted-interleave": "memory policy weighted-interleave is unsupported on this kernel "
                                      "(needs Linux 6.9+)"}


def problems(tmp_path: Path, rule: str, unsupported=None) -> list[str]:
    path = tmp_path / "numad-py.toml"
    path.write_text(f'[[rule]]\nname = "w"\nmatch.comm = "db"\n{rule}\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, online_nodes=frozenset({0, 1}), unsupported_policies=unsupported)
    return [str(p).replace(str(tmp_path) + "/", "") for p in info.value.problems]


WEIGHTED = 'policy = { mode = "weighted-interleave", weights = { 0 = 1, 1 = 1 } }'


def test_weighted_rule_loads_and_targets_its_nodes(tmp_path):
    path = tmp_path / "numad-py.toml"
    path.write_text(f'[[rule]]\nname = "w"\nmatch.comm = "db"\n{WEIGHTED}\n')
    rule = load_config(path, online_nodes=frozenset({0, 1}), unsupported_policies={}).rules[0]
    assert rule.nodes == "0-1" and rule.policy is not None
    assert rule.policy.spec().weight_map() == {0: 1, 1: 1}


def test_kernel_without_the_mode_is_one_line_naming_the_release(tmp_path):
    assert problems(tmp_path, WEIGHTED, UNSUPPORTED) == [
        "numad-py.toml:4: rules[0].policy: memory policy weighted-interleave is unsupported on this kernel "
        "(needs Linux 6.9+)"]


@pytest.mark.parametrize("rule,message", [
    ('policy = { mode = "weighted-interleave", weights = { 0 = 0 } }',
     "numad-py.toml:4: rules[0].policy: weight of node 0 must be a whole number 1-255, got 0"),
    ('policy = { mode = "bind", nodes = "0-1", home_node = 3 }',
     "numad-py.toml:4: rules[0].policy: home-node 3 is not one of the policy's nodes 0-1"),
    ('policy = { mode = "local" }',
     "numad-py.toml:4: rules[0].policy: mode 'local' has nothing to place in a rule; rules take preferred, "
     "preferred-many, bind, interleave or weighted-interleave"),
    ('policy = { mode = "interleave", nodes = "0-1", wieghts = {} }',
     "numad-py.toml:4: rules[0].policy.wieghts: unknown key 'wieghts' (did you mean 'weights'?)"),
    ('policy = { mode = "weighted-interleave", weights = { 0 = 1, 5 = 1 } }',
     # the policy's nodes are the rule's nodes: checked against the machine as `nodes` is
     "numad-py.toml:1: rules[0].nodes: node 5 does not exist on this machine"),
    ('nodes = "0"\npolicy = { mode = "interleave", nodes = "0-1" }',
     "numad-py.toml:1: rules[0]: give the nodes inside policy (nodes or weights), not also as the rule's nodes"),
])
def test_bad_policy_tables(tmp_path, rule, message):
    got = problems(tmp_path, rule)
    assert len(got) == 1 and got[0].startswith(message), got


# --- planning ----------------------------------------------------------------------

RULE = {"match": {"comm": "postgres"}, "policy": {"mode": "weighted-interleave", "weights": {"0": 1, "1": 1}}}


def test_all_on_one_node_plans_a_weighted_migration():
    (action,) = plan(snap(proc(residency={0: 128 * MiB})), config(RULE), {}).actions
    assert action.kind == "migrate" and action.weights == ((0, 1), (1, 1))
    assert action.target_nodes == {0, 1} and action.misplaced_bytes == 64 * MiB
    assert "new allocations follow it only in processes started through `numad-py exec`" in action.reason


def test_weights_three_to_one():
    rule = {**RULE, "policy": {"mode": "weighted-interleave", "weights": {"0": 3, "1": 1}}}
    (action,) = plan(snap(proc(residency={0: 64 * MiB, 1: 64 * MiB})), config(rule), {}).actions
    # 3:1 of 128 MiB is 96/32: node 1 holds 32 MiB beyond its share
    assert action.misplaced_bytes == 32 * MiB and action.from_nodes == {1}


def test_a_split_within_tolerance_plans_nothing():
    assert not plan(snap(proc(residency={0: 65 * MiB, 1: 63 * MiB})), config(RULE), {}).actions


def test_what_the_last_pass_could_not_move_is_not_chased():
    from numad_py.decide.history import ProcessHistory
    p = proc(residency={0: 74 * MiB, 1: 54 * MiB})
    history = {p.identity: ProcessHistory(first_seen=0.0, last_action=1.0, handled_once=False,
                                          unmovable_bytes=20 * MiB)}
    assert plan(snap(p), config({**RULE, "every": "1s"}), history).actions == ()
    assert plan(snap(p), config({**RULE, "every": "1s"}), {}).actions


def test_plain_interleave_weighs_nodes_equally():
    rule = {**RULE, "policy": {"mode": "interleave", "nodes": "0-1"}}
    (action,) = plan(snap(proc(residency={1: 100 * MiB})), config(rule), {}).actions
    assert action.weights == ((0, 1), (1, 1)) and action.misplaced_bytes == 50 * MiB


def test_bind_policy_uses_the_node_set_placement():
    rule = {**RULE, "policy": {"mode": "bind", "nodes": "1"}}
    (action,) = plan(snap(proc(residency={0: 100 * MiB})), config(rule), {}).actions
    assert action.weights == () and action.target_nodes == {1}
