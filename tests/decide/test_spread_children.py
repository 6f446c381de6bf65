"""Issue 18 item 14: a rule with both `nodes` and `spread_children` must not pull the shim's
spread children back to the parent's node.  The child is told apart by its task policy
(numa_maps shows `prefer:N` where the shim set it), read by the sensor for such rules only."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from numad_py.decide.planner import plan
from numad_py.sense.maps import parse_task_policy, read_task_policy

from decide_literals import GiB, config, proc, snap

RULE = {"name": "spread", "match": {"comm": "postgres"}, "nodes": "0", "spread_children": "0-1"}


def test_a_child_the_shim_placed_is_left_where_it_was_spread():
    parent = proc(pid=100, residency={1: GiB}, task_policy="default")
    child = proc(pid=101, residency={1: GiB}, task_policy="prefer:1")
    result = plan(snap(parent, child), config(RULE), {})
    kinds = {a.pid: a.kind for a in result}
    assert kinds == {100: "migrate", 101: "advise"}
    (advice,) = [a for a in result if a.pid == 101]
    assert "placed at fork by the shim (prefer:1)" in advice.reason


def test_without_spread_children_a_set_policy_does_not_exempt():
    child = proc(pid=101, residency={1: GiB}, task_policy="prefer:1")
    result = plan(snap(child), config({k: v for k, v in RULE.items() if k != "spread_children"}), {})
    assert [a.kind for a in result] == ["migrate"]


@pytest.mark.parametrize("text, policy", [
    ("", "default"),
    ("55d0 default file=/bin/x mapped=2 N0=2 kernelpagesize_kB=4\n", "default"),
    ("55d0 prefer:1 anon=3 N1=3\n7f00 prefer:1 file=/lib/x N0=1\n7f10 bind:0 anon=1 N0=1\n", "prefer:1"),
    ("garbage\n7f00 interleave:0-3 anon=4 N0=1 N1=1 N2=1 N3=1\n", "interleave:0-3"),
    ("7f00 weighted interleave:0-1 anon=4 N0=2 N1=2\n", "weighted interleave:0-1"),
    ("7f00 prefer (many)=static:0-1 anon=4 N0=4\n", "prefer (many)=static:0-1"),
])
def test_task_policy_is_what_most_mappings_show(text, policy):
    assert parse_task_policy(text) == policy


@pytest.mark.skipif(shutil.which("numactl") is None, reason="numactl is installed by make test's set-up")
def test_task_policy_of_a_real_process_started_with_a_preferred_node():
    child = subprocess.Popen(["numactl", "--preferred=0", "sleep", "30"])
    try:
        import time
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            policy = read_task_policy(child.pid)
            if policy.startswith("prefer"):
                break
            time.sleep(0.05)   # still numactl, before its exec
        assert policy == "prefer:0"
        mine = subprocess.Popen(["sleep", "30"])
        try:
            time.sleep(0.2)
            assert read_task_policy(mine.pid) == "default"
        finally:
            mine.kill()
    finally:
        child.kill()
