"""Pre-placement advice on literal snapshots: one node when one fits, nearest nodes added
otherwise, memory-only nodes never chosen, reservations respected."""

from __future__ import annotations

import pytest

from numad_py.decide.advise import Reservation, advise
from numad_py.decide.snapshot import NodeInfo, Snapshot

GiB = 1 << 30


def node(i, cpus, free_gib, total_gib=4, has_cpu=True):
    return NodeInfo(id=i, cpus=frozenset(cpus), mem_total=total_gib * GiB, mem_free=int(free_gib * GiB),
                    has_cpu=has_cpu)


TWO = (node(0, [0, 1], 1), node(1, [2, 3], 3))
FOUR_DIST = {(a, b): (10 if a == b else 20 + 10 * abs(a - b)) for a in range(4) for b in range(4)}


@pytest.mark.parametrize("cpus, memory, load, expect, fits", [
    (1, 0, {}, {1}, True),                          # most free memory wins
    (2, 512 << 20, {}, {1}, True),
    (2, 512 << 20, {1: 0.5}, {0}, True),            # node 1 is half busy: 1 idle CPU left
    (3, 0, {}, {0, 1}, True),                       # no node has 3 CPUs
    (2, 3.5 * GiB, {}, {0, 1}, True),               # memory spills over
    (8, 0, {}, {0, 1}, False),                      # nothing fits: every CPU node, said so
    (2, 0, {0: 0.1, 1: 0.1}, {0, 1}, True),         # 1.8 idle CPUs per node is not 2 CPUs
])
def test_two_nodes(cpus, memory, load, expect, fits):
    result = advise(Snapshot(time=0, nodes=TWO, cpu_load=load), cpus=cpus, memory=int(memory))
    assert result.nodes == frozenset(expect)
    assert result.fits is fits
    assert result.reasons


def test_memory_only_node_is_never_advised():
    nodes = TWO + (node(2, [], 100, total_gib=100, has_cpu=False),)
    result = advise(Snapshot(time=0, nodes=nodes), cpus=1, memory=50 * GiB)
    assert 2 not in result.nodes
    assert result.fits is False


def test_nearest_nodes_are_added_first():
    nodes = tuple(node(i, [i], 1) for i in range(4))
    snap = Snapshot(time=0, nodes=nodes, distances=FOUR_DIST)
    result = advise(snap, cpus=2, memory=0)
    (first,) = [r.node for r in result.rooms[:1]]
    assert len(result.nodes) == 2 and first in result.nodes
    other = next(iter(result.nodes - {first}))
    assert abs(other - first) == 1  # the neighbour, not a far node


def test_reservation_sends_the_next_workload_elsewhere():
    snap = Snapshot(time=0, nodes=TWO)
    first = advise(snap, cpus=2, memory=1 * GiB)
    assert first.nodes == {1}
    second = advise(snap, cpus=2, memory=1 * GiB, reserved={1: Reservation(cpus=2, bytes=1 * GiB)})
    assert second.nodes == {0}


def test_allowed_nodes_limit_the_choice():
    assert advise(Snapshot(time=0, nodes=TWO), cpus=1, allowed=frozenset({0})).nodes == {0}
    assert advise(Snapshot(time=0, nodes=TWO), cpus=1, allowed=frozenset()).nodes == frozenset()
