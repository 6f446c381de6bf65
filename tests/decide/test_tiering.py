"""The pure tier decision on literal snapshots: cold/hot bands, hysteresis (dwell), the cap."""

from __future__ import annotations

from dataclasses import replace

import pytest

from numad_py.decide.history import ProcessHistory, record
from numad_py.decide.planner import inactive_rules, plan
from numad_py.decide.snapshot import ProcessAccess, RegionAccess
from numad_py.decide.tiering import home_node

from decide_literals import MEMONLY2, NODE0, NODE1, MiB, NOW, config, proc, snap

NODES = (NODE0, NODE1, MEMONLY2)
# 5 ms samples / 100 ms aggregation: 20 samples per interval; age 10 = 1 s
SAMPLE_US, AGGR_US = 5000, 100_000
BASE = 0x7F0000000000


def region(i: int, mib: int = 16, *, acc: int = 0, age: int = 0, nodes: dict | None = None) -> RegionAccess:
    start = BASE + i * 16 * MiB
    return RegionAccess(start, start + mib * MiB, acc, age, nodes if nodes is not None else {0: mib * MiB})


def tier_rule(**tier) -> dict:
    return {"match": {"comm": "app"}, "tier": {"fast": "0-1", "slow": "2", "cold_after": "1s",
                                                "hot_min": "5%", "dwell": "5s", **tier}}


def tiered(regions, *, residency=None, history=None, affinity=frozenset({0, 1}), time=NOW, **tier):
    p = proc(comm="app", residency=residency or {0: 128 * MiB}, cpu_affinity=affinity)
    s = replace(snap(p, nodes=NODES, time=time),
                access={p.identity: ProcessAccess(tuple(regions), SAMPLE_US, AGGR_US)})
    cfg = config(tier_rule(**tier))
    return plan(s, cfg, history or {}), s, cfg


@pytest.mark.parametrize("acc, age, on, expect", [
    (0, 10, 0, ("slow", frozenset({2}))),       # idle 1 s = cold_after: demote
    (0, 9, 0, None),                             # idle 0.9 s: not yet cold
    (0, 50, 2, None),                            # cold but already on the slow node
    (1, 50, 2, ("fast", frozenset({0}))),        # 1 of 20 samples = 5 %: hot, promote home
    (1, 50, 0, None),                            # hot and already on a fast node
    (0, 0, 2, None),                             # idle but young, on slow: between the bands, stays
])
def test_each_region_is_cold_hot_or_left_alone(acc, age, on, expect):
    result, _s, _c = tiered([region(0, acc=acc, age=age, nodes={on: 16 * MiB})])
    moves = [a for a in result if a.kind == "migrate"]
    if expect is None:
        assert moves == []
    else:
        (a,) = moves
        assert (a.tier, a.target_nodes) == expect
        assert a.ranges == ((BASE, BASE + 16 * MiB),)
        assert a.memory == (f"{BASE:#x}-{BASE + 16 * MiB:#x}",)   # what the executor resolves
        assert a.access["bytes"] == 16 * MiB and a.access["age_seconds"] == pytest.approx(age / 10)


def test_damon_age_is_not_enough_for_cold_the_sensors_idle_time_must_agree():
    """A count flickering 0/1 keeps DAMON's age growing: the sensor saw an access 0.5 s ago."""
    r = replace(region(0, acc=0, age=40), idle_seconds=0.5)
    result, _s, _c = tiered([r])
    assert [a for a in result if a.kind == "migrate"] == []
    result, _s, _c = tiered([replace(r, idle_seconds=1.0)])
    assert [a.tier for a in result if a.kind == "migrate"] == ["slow"]


def test_promotion_waits_for_a_second_hot_measurement():
    """A region hot at one look only (DAMON has not split it yet) stays where it is."""
    r = replace(region(0, acc=10, age=0, nodes={2: 16 * MiB}), hot_streak=1)
    result, _s, _c = tiered([r])
    assert [a for a in result if a.kind == "migrate"] == []
    result, _s, _c = tiered([replace(r, hot_streak=2)])
    assert [a.tier for a in result if a.kind == "migrate"] == ["fast"]


def test_at_the_edge_of_a_hot_run_promotion_waits_for_four_hot_measurements():
    """The cold 2 MiB beside a hot range looks hot whenever DAMON's boundary strays into it."""
    r = replace(region(0, acc=10, age=0, nodes={2: 2 * MiB}), hot_edge=True)
    for streak in (2, 3):
        result, _s, _c = tiered([replace(r, hot_streak=streak)])
        assert [a for a in result if a.kind == "migrate"] == []
    result, _s, _c = tiered([replace(r, hot_streak=4)])
    assert [a.tier for a in result if a.kind == "migrate"] == ["fast"]


def test_hot_min_is_a_threshold_not_any_access():
    result, _s, _c = tiered([region(0, acc=1, age=50, nodes={2: 16 * MiB})], hot_min="10%")
    assert [a for a in result if a.kind == "migrate"] == []


def test_promotions_come_first():
    result, _s, _c = tiered([region(0, acc=0, age=40), region(2, acc=20, age=5, nodes={2: 16 * MiB})])
    assert [a.tier for a in result if a.kind == "migrate"] == ["fast", "slow"]


def test_adjacent_regions_merge_into_one_explained_move():
    regions = [region(i, acc=0, age=30 + i) for i in range(3)] + [region(3, acc=20, age=5)]
    result, _s, _c = tiered(regions)
    (a,) = [a for a in result if a.kind == "migrate"]
    assert a.ranges == tuple((BASE + i * 16 * MiB, BASE + (i + 1) * 16 * MiB) for i in range(3))
    assert a.access["regions"] == 3 and a.access["bytes"] == 48 * MiB and a.access["age_seconds"] == 3.0
    d = a.to_dict()
    assert d["tier"] == "slow" and d["access"]["frequency"] == 0.0 and "not accessed for 3.0s" in d["reason"]


def test_home_is_the_fast_node_the_process_may_run_on():
    p = proc(comm="app", residency={0: 10 * MiB, 1: 90 * MiB}, cpu_affinity=frozenset({0, 1}))
    s = snap(p, nodes=NODES)
    assert home_node(p, s, frozenset({0, 1})) == 0                       # its CPUs are node 0's
    assert home_node(replace(p, cpu_affinity=None), s, frozenset({0, 1})) == 1   # anywhere: most memory


def test_dwell_holds_back_the_opposite_move_only():
    r = region(0, acc=20, age=5, nodes={2: 16 * MiB})   # hot, on slow
    demoted = ProcessHistory(first_seen=0.0, tier_moves=((BASE, BASE + 16 * MiB, "slow", NOW - 2.0),))
    p = proc(comm="app")
    result, _s, _c = tiered([r], history={p.identity: demoted})
    assert [a for a in result if a.kind == "migrate"] == []        # demoted 2 s ago, dwell 5 s
    result, _s, _c = tiered([r], history={p.identity: demoted}, time=NOW + 4.0)
    assert [a.tier for a in result if a.kind == "migrate"] == ["fast"]   # 6 s later: promoted
    # what a demotion 2 s ago left behind (refused pages) is retried after the dwell, not every tick
    cold = region(0, acc=0, age=40, nodes={0: 8 * MiB, 2: 8 * MiB})
    result, _s, _c = tiered([cold], history={p.identity: demoted})
    assert [a for a in result if a.kind == "migrate"] == []
    result, _s, _c = tiered([cold], history={p.identity: demoted}, time=NOW + 4.0)
    assert [a.tier for a in result if a.kind == "migrate"] == ["slow"]


def test_moves_the_same_way_do_not_lengthen_the_dwell():
    r = region(0, acc=20, age=5, nodes={2: 16 * MiB})   # hot, on slow
    p = proc(comm="app")
    demoted = ProcessHistory(first_seen=0.0, tier_moves=tuple(
        (BASE + i * MiB, BASE + (i + 1) * MiB, "slow", NOW - 6.0 + i * 0.1) for i in range(10)))
    result, _s, _c = tiered([r], history={p.identity: demoted})
    assert [a.tier for a in result if a.kind == "migrate"] == ["fast"]   # 10 demotions, no reversal: 5 s


@pytest.mark.parametrize("dwell, most", [("5s", 3), ("0s", 19)])
def test_a_range_cycling_hot_and_cold_moves_at_most_once_per_dwell(dwell, most):
    """Simulated ticks, access flipping every 1 s: dwell bounds the moves, none moves on every flip."""
    history: dict = {}
    moves = 0
    where = 0
    for tick in range(40):                     # 40 ticks of 0.5 s = 20 s, dwell 5 s
        now = NOW + tick * 0.5
        hot = tick % 4 < 2
        r = region(0, acc=20 if hot else 0, age=10 if hot else 40, nodes={where: 16 * MiB})
        result, s, _c = tiered([r], history=history, time=now, dwell=dwell)
        done = [a for a in result if a.kind == "migrate"]
        for a in done:
            where = min(a.target_nodes)
        moves += len(done)
        history = record(history, result, now, attempted=done, completed=done)
    # dwell 5 s, doubled per reversal: moves at 1 s, 6 s, 16 s; none: every flip but the first (hot, in place)
    assert moves == most


def test_cap_keeps_the_slow_share_and_demotes_the_coldest_first():
    regions = [region(i, acc=0, age=20 + 10 * i) for i in range(8)]        # 8 x 16 MiB, all cold
    result, _s, _c = tiered(regions, max_slow_share="50%")
    moves = [a for a in result if a.kind == "migrate"]
    moved = sum(a.misplaced_bytes for a in moves)
    assert moved == 64 * MiB                                               # half of 128 MiB
    starts = sorted(s for a in moves for s, _e in a.ranges)
    assert starts == [BASE + i * 16 * MiB for i in range(4, 8)]             # the oldest four
    (advice,) = [a for a in result if a.kind == "advise"]
    assert "64.0MiB of cold memory stays on fast nodes: max_slow_share 50% reached" in advice.reason


def test_cap_counts_what_already_sits_on_slow_and_promotions_make_room():
    residency = {0: 64 * MiB, 2: 64 * MiB}
    regions = [region(0, acc=20, age=5, nodes={2: 16 * MiB}),                 # hot on slow: promote
               region(2, acc=0, age=50), region(4, acc=0, age=40)]            # 2 x 16 MiB cold
    result, _s, _c = tiered(regions, residency=residency, max_slow_share="60%")
    moves = {a.tier: a.misplaced_bytes for a in result if a.kind == "migrate"}
    # 60 % of 128 MiB = 76.8 MiB; 64 on slow - 16 promoted = 48: room for one 16 MiB region
    assert moves == {"fast": 16 * MiB, "slow": 16 * MiB}


def test_no_measurement_yet_is_advice():
    p = proc(comm="app")
    result = plan(snap(p, nodes=NODES), config(tier_rule()), {})
    (a,) = result.actions
    assert a.kind == "advise" and "no DAMON measurement" in a.reason


def test_without_damon_the_tier_rule_is_inactive_and_the_rest_runs():
    s = replace(snap(proc(comm="app"), proc(pid=7, comm="db", residency={1: MiB}), nodes=NODES),
                access_missing="needs DAMON (6.x with CONFIG_DAMON_SYSFS)")
    cfg = config(tier_rule(), {"match": {"comm": "db"}, "nodes": "0"})
    assert inactive_rules(cfg.rules, s) == {"r0": "inactive here: needs DAMON (6.x with CONFIG_DAMON_SYSFS)"}
    result = plan(s, cfg, {})
    assert [(a.rule, a.kind) for a in result] == [("r1", "migrate")]


def test_record_keeps_completed_tier_moves_for_the_dwell():
    result, _s, _c = tiered([region(0, acc=0, age=40)])
    done = [a for a in result if a.kind == "migrate"]
    history = record({}, result, NOW, attempted=done, completed=done)
    (entry,) = history.values()
    assert entry.tier_moves == ((BASE, BASE + 16 * MiB, "slow", NOW),)
    assert record({}, result, NOW, attempted=done, completed=[]).popitem()[1].tier_moves == ()
