"""The auto scoring function and node choice."""

from __future__ import annotations

import pytest

from numad_py.decide.auto import choose_node, home_node, score_node
from numad_py.decide.snapshot import NodeInfo

from decide_literals import GiB, MEMONLY2, NODE0, NODE1, proc, snap


def node(i, free_gib, total_gib=8, cpus=True):
    return NodeInfo(id=i, cpus=frozenset({i}) if cpus else frozenset(), mem_total=total_gib * GiB,
                    mem_free=free_gib * GiB, has_cpu=cpus)


def test_score_formula():
    assert score_node(node(0, 4), load=0.0, distance=10) == pytest.approx(0.5)
    assert score_node(node(0, 4), load=1.0, distance=10) == pytest.approx(0.0)
    assert score_node(node(0, 4), load=0.0, distance=20) == pytest.approx(0.4)
    assert score_node(node(0, 0, total_gib=0), load=0.0, distance=10) == 0.0


@pytest.mark.parametrize(
    "residency, expected",
    [({0: 1, 1: 5}, 1), ({0: 5, 1: 5}, 0), ({}, None), (None, None), ({3: 0}, None)],
)
def test_home_node(residency, expected):
    assert home_node(residency) == expected


@pytest.mark.parametrize(
    "nodes, residency, load, candidates, expected",
    [
        ((NODE0, NODE1), {0: GiB}, {}, {0, 1}, 1),           # 75 % free beats 25 %
        ((NODE0, NODE1), {0: GiB}, {1: 1.0}, {0, 1}, 0),     # but not when node 1 is saturated
        ((node(0, 4), node(1, 4)), {1: GiB}, {}, {0, 1}, 1), # tie: stay home
        ((node(0, 4), node(1, 5)), {0: GiB}, {}, {0, 1}, 0), # small gain: stay home
        ((node(0, 4), node(1, 5)), {}, {}, {0, 1}, 1),       # no home yet: best wins
        ((node(0, 4), node(1, 4)), {}, {}, {0, 1}, 0),       # exact tie: lowest id
        # the memory-only node is emptiest and idle, but no CPU is near it: never chosen
        ((NODE0, NODE1, MEMONLY2), {0: GiB}, {}, {0, 1, 2}, 1),
        ((NODE0, NODE1, MEMONLY2), {2: GiB}, {}, {0, 1, 2}, 1),   # not even as home
        ((NODE0, NODE1, MEMONLY2), {0: GiB}, {}, {2}, None),      # cpuset allows only it
        ((NODE0, NODE1), {0: GiB}, {}, {0}, 0),               # cpuset allows only 0
        ((node(0, 0), node(1, 0)), {0: GiB}, {}, {0, 1}, 0),  # only home fits (nothing moves)
        ((node(0, 0), node(1, 0)), {2: GiB}, {}, {0, 1}, None),  # nowhere to go
        ((NODE0, NODE1), {0: GiB}, {}, set(), None),
    ],
)
def test_choose_node(nodes, residency, load, candidates, expected):
    snapshot = snap(nodes=nodes, cpu_load=load)
    choice = choose_node(snapshot, proc(residency=residency), frozenset(candidates))
    assert (choice.node if choice else None) == expected
