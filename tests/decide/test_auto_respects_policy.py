"""Issue 15 ("whether either undoes … the shim's placement"): an auto rule leaves alone a
process whose own memory policy places it (numactl, `numad-py exec`, the fork shim, the
program), where the policy says nothing about nodes ("default", "local") it places as before.
Node 1 has 6 GiB free against node 0's 2, so auto wants every process of node 0 on node 1."""

from __future__ import annotations

import pytest

from numad_py.decide.planner import placed_by_policy, plan

from decide_literals import GiB, config, proc, snap

AUTO_RULE = {"name": "auto", "match": {"comm": "postgres"}, "nodes": "auto", "auto": True}


@pytest.mark.parametrize("policy", ["bind:0", "prefer:0", "prefer=static:0", "interleave:0-1",
                                    "prefer (many):0-1", "weighted interleave:0-1"])
def test_auto_only_advises_for_a_process_its_policy_placed(policy):
    (advice,) = plan(snap(proc(task_policy=policy, residency={0: GiB})), config(AUTO_RULE), {})
    assert advice.kind == "advise"
    assert f"its own memory policy, {policy}, places it" in advice.reason


@pytest.mark.parametrize("policy", ["default", "local", None])
def test_auto_moves_a_process_whose_policy_places_nothing(policy):
    result = plan(snap(proc(task_policy=policy, residency={0: GiB})), config(AUTO_RULE), {})
    assert [(a.kind, a.target_nodes) for a in result] == [("migrate", frozenset({1}))]


def test_a_rule_naming_nodes_still_moves_a_process_with_a_policy():
    named = {**AUTO_RULE, "nodes": "1"}
    del named["auto"]
    result = plan(snap(proc(task_policy="bind:0", residency={0: GiB})), config(named), {})
    assert [(a.kind, a.target_nodes) for a in result] == [("migrate", frozenset({1}))]


def test_policy_words():
    assert [placed_by_policy(p) for p in ("default", "local", None, "bind:1", "prefer=relative:0")] == \
        [False, False, False, True, True]
