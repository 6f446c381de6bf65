"""The planner on literal snapshots, table-driven (earlyoom / systemd-oomd style)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, strategies as st

from numad_py.decide.history import ProcessHistory, record
from numad_py.decide.planner import plan

from decide_literals import GiB, MEMONLY2, MiB, NODE0, NODE1, NOW, config, proc, snap

DB = {"match": {"comm": "postgres"}, "nodes": "1"}


def summary(result):
    return [(a.kind, a.pid, a.rule, sorted(a.target_nodes), sorted(a.from_nodes), a.misplaced_bytes) for a in result]


# (id, rules, processes, history, expected summary)
CASES = [
    ("misplaced memory moves", [DB], [proc()], {}, [("migrate", 100, "r0", [1], [0], GiB)]),
    ("already placed: nothing", [DB], [proc(residency={1: GiB})], {}, []),
    ("partly placed: only the rest", [DB], [proc(residency={0: 3 * MiB, 1: GiB})], {},
     [("migrate", 100, "r0", [1], [0], 3 * MiB)]),
    ("no rule matches", [DB], [proc(comm="nginx")], {}, []),
    ("comm is a full match", [DB], [proc(comm="postgres-exp")], {}, []),
    ("empty residency: nothing", [DB], [proc(residency={})], {}, []),
    ("zero-byte entries are not misplaced", [DB], [proc(residency={0: 0, 1: GiB})], {}, []),
    ("unreadable residency advises", [DB], [proc(residency=None)], {}, [("advise", 100, "r0", [1], [], 0)]),
    ("first match wins", [DB, {"match": {"user": "pg"}, "nodes": "0"}], [proc()], {},
     [("migrate", 100, "r0", [1], [0], GiB)]),
    ("second rule when first misses", [{"match": {"comm": "nginx"}, "nodes": "0"}, {"match": {"user": 1000}, "nodes": "1"}],
     [proc()], {}, [("migrate", 100, "r1", [1], [0], GiB)]),
    ("cgroup glob", [{"match": {"cgroup": "/system.slice/postgres*"}, "nodes": "1"}], [proc()], {},
     [("migrate", 100, "r0", [1], [0], GiB)]),
    ("unit", [{"match": {"unit": "postgresql.service"}, "nodes": "1"}], [proc(cgroup="/system.slice/postgresql.service/x")],
     {}, [("migrate", 100, "r0", [1], [0], GiB)]),
    ("min_rss too small", [{"match": {"comm": "postgres", "min_rss": "2GiB"}, "nodes": "1"}], [proc()], {}, []),
    ("exe unreadable never matches exe rule", [{"match": {"exe": ".*postgres"}, "nodes": "1"}], [proc(exe=None)], {}, []),
    ("cmdline regex search", [{"match": {"cmdline": "-D /var/lib"}, "nodes": "1"}], [proc()], {},
     [("migrate", 100, "r0", [1], [0], GiB)]),
    ("cpuset.mems excludes target: advise", [DB], [proc(mems_allowed=frozenset({0}))], {},
     [("advise", 100, "r0", [], [], 0)]),
    ("cpuset.mems narrows target", [{"match": {"comm": "postgres"}, "nodes": "all"}],
     [proc(residency={0: GiB, 2: GiB}, mems_allowed=frozenset({0, 1}))], {},
     [("migrate", 100, "r0", [0, 1], [2], GiB)]),
    ("target node went offline: advise", [{"match": {"comm": "postgres"}, "nodes": "3"}], [proc()], {},
     [("advise", 100, "r0", [], [], 0)]),
    ("once: handled process is left alone", [DB], [proc()],
     {(100, 150.0): ProcessHistory(first_seen=0, last_action=10, handled_once=True)}, []),
    ("once: failed attempt retried after cooldown", [DB], [proc()],
     {(100, 150.0): ProcessHistory(first_seen=0, last_action=NOW - 60)}, [("migrate", 100, "r0", [1], [0], GiB)]),
    ("once: failed attempt within cooldown waits", [DB], [proc()],
     {(100, 150.0): ProcessHistory(first_seen=0, last_action=NOW - 59)}, []),
    ("pid reuse is a new process", [DB], [proc()],
     {(100, 99.0): ProcessHistory(first_seen=0, last_action=10, handled_once=True)}, [("migrate", 100, "r0", [1], [0], GiB)]),
    ("every: due again", [{**DB, "every": "30s"}], [proc()],
     {(100, 150.0): ProcessHistory(first_seen=0, last_action=NOW - 30, handled_once=True)},
     [("migrate", 100, "r0", [1], [0], GiB)]),
    ("every: not yet (and replaces the cooldown)", [{**DB, "every": "30s"}], [proc()],
     {(100, 150.0): ProcessHistory(first_seen=0, last_action=NOW - 29, handled_once=True)}, []),
    ("every: a check that found nothing counts as the last one", [{**DB, "every": "30s"}], [proc()],
     {(100, 150.0): ProcessHistory(first_seen=0, last_action=NOW - 300, last_checked=NOW - 29, handled_once=True)}, []),
    ("every: due `every` after the last check", [{**DB, "every": "30s"}], [proc()],
     {(100, 150.0): ProcessHistory(first_seen=0, last_action=NOW - 300, last_checked=NOW - 30, handled_once=True)},
     [("migrate", 100, "r0", [1], [0], GiB)]),
    ("once=false: waits `every` after first sight", [{**DB, "once": False, "every": "5m"}], [proc()], {}, []),
    ("once=false: acts `every` after first sight", [{**DB, "once": False, "every": "5m"}], [proc()],
     {(100, 150.0): ProcessHistory(first_seen=NOW - 300)}, [("migrate", 100, "r0", [1], [0], GiB)]),
    ("pin when affinity strays", [{**DB, "cpus": True}], [proc(residency={1: GiB}, cpu_affinity=frozenset({0, 1, 2, 3}))],
     {}, [("pin", 100, "r0", [1], [], 0)]),
    ("no pin when affinity inside", [{**DB, "cpus": True}], [proc(residency={1: GiB}, cpu_affinity=frozenset({3}))], {}, []),
    ("pin when affinity unknown", [{**DB, "cpus": True}], [proc(residency={1: GiB})], {}, [("pin", 100, "r0", [1], [], 0)]),
    ("migrate then pin", [{**DB, "cpus": True}], [proc(cpu_affinity=frozenset({0}))], {},
     [("migrate", 100, "r0", [1], [0], GiB), ("pin", 100, "r0", [1], [], 0)]),
    ("cpu-less target cannot pin", [{"match": {"comm": "postgres"}, "nodes": "2", "cpus": True}],
     [proc(residency={2: GiB})], {}, [("advise", 100, "r0", [2], [], 0)]),
]


@pytest.mark.parametrize("rules, processes, history, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan_table(rules, processes, history, expected):
    snapshot = snap(*processes, nodes=(NODE0, NODE1, MEMONLY2))
    assert summary(plan(snapshot, config(*rules), history)) == expected


@pytest.mark.parametrize(
    "daemon, expected",
    [
        ({"exclude": ["post.*"]}, []),
        ({"include": ["nginx"]}, []),
        ({"include": ["nginx", "postgres"]}, [("migrate", 100, "r0", [1], [0], GiB)]),
        ({"include": ["postgres"], "exclude": ["postgres"]}, []),
    ],
)
def test_global_include_exclude(daemon, expected):
    assert summary(plan(snap(proc()), config(DB, **daemon), {})) == expected


def test_auto_only_advises_unless_enabled():
    rules = [{"match": {"comm": "postgres"}, "nodes": "auto"}]
    # node 0: 25% free, node 1: 75% free -> node 1 beats home node 0 by more than the margin
    advice = plan(snap(proc()), config(*rules), {})
    assert summary(advice) == [("advise", 100, "r0", [1], [0], GiB)]
    assert "advice only" in advice.actions[0].reason and "auto chose node 1" in advice.actions[0].reason
    assert summary(plan(snap(proc()), config(*rules, auto=True), {})) == [("migrate", 100, "r0", [1], [0], GiB)]
    enabled_in_rule = [{**rules[0], "auto": True}]
    assert summary(plan(snap(proc()), config(*enabled_in_rule), {})) == [("migrate", 100, "r0", [1], [0], GiB)]


def test_auto_choices_in_one_tick_see_each_other():
    """Four busy processes interleaved over two equal nodes: not all sent to the same node."""
    nodes = (replace(NODE0, mem_free=6 * GiB), NODE1)
    procs = [proc(pid=100 + i, residency={0: GiB // 2, 1: GiB // 2}) for i in range(4)]
    result = plan(snap(*procs, nodes=nodes), config({"match": {"comm": "postgres"}, "nodes": "auto", "auto": True}), {})
    targets = [sorted(a.target_nodes) for a in result.actions if a.kind == "migrate"]
    assert len(targets) == 4 and targets.count([0]) == 2 and targets.count([1]) == 2, targets
    # The first choice alone is what choose_node says for an unclaimed snapshot.
    first = plan(snap(procs[0], nodes=nodes), config({"match": {"comm": "postgres"}, "nodes": "auto", "auto": True}), {})
    assert [sorted(a.target_nodes) for a in first.actions] == [targets[0]]


def test_auto_with_no_room_advises():
    full = [NODE0.__class__(id=n, cpus=frozenset({n}), mem_total=GiB, mem_free=0, has_cpu=True) for n in (0, 1)]
    result = plan(snap(proc(residency={0: GiB}, mems_allowed=frozenset({1})), nodes=tuple(full)),
                  config({"match": {"comm": "postgres"}, "nodes": "auto", "auto": True}), {})
    assert summary(result) == [("advise", 100, "r0", [], [], 0)]
    assert "auto found no node with CPUs and room for 1.0GiB (cgroup cpuset.mems allows 1)" in result.actions[0].reason


def test_reason_carries_the_numbers():
    action = plan(snap(proc(residency={0: GiB, 1: GiB}), numa_balancing=1), config({**DB, "numa_balancing": False}), {}).actions[0]
    assert action.reason == (
        "rule 'r0': 1.0GiB of 2.0GiB resident is outside node 1 (1.0GiB on node 0); target node 1 from the rule; "
        "kernel NUMA balancing is on (mode 1) and the rule wants it off, "
        "which cannot be done for a running process from outside: it may move pages back "
        "(a process started through `numad-py exec` with an explicit policy is left alone by it)"
    )
    assert action.numa_balancing is False
    assert action.to_dict()["target_nodes"] == "1"


def test_selected_mappings_are_carried():
    action = plan(snap(proc()), config({**DB, "memory": ["[heap]", "anon"], "move_all": True}), {}).actions[0]
    assert action.memory == ("[heap]", "anon") and action.move_all
    assert "moves only [heap], anon" in action.reason


def test_order_is_by_rule_then_pid():
    rules = [{"match": {"comm": "nginx"}, "nodes": "1"}, DB]
    processes = [proc(pid=7), proc(pid=300, comm="nginx"), proc(pid=5), proc(pid=200, comm="nginx")]
    assert [(a.rule, a.pid) for a in plan(snap(*processes), config(*rules), {})] == [
        ("r0", 200), ("r0", 300), ("r1", 5), ("r1", 7)
    ]


def test_history_roundtrip_makes_once_idempotent():
    snapshot, cfg = snap(proc(), proc(pid=101, comm="nginx")), config(DB)
    first = plan(snapshot, cfg, {})
    history = record({}, first, NOW, attempted=first.actions, completed=first.actions)
    assert set(history) == {(100, 150.0)}  # non-matching processes are not remembered
    assert history[(100, 150.0)] == ProcessHistory(first_seen=NOW, last_action=NOW, handled_once=True)
    assert plan(snapshot, cfg, history).actions == ()
    # a process that vanished is forgotten
    assert record(history, plan(snap(), cfg, history), NOW + 10) == {}


def test_attempted_but_not_completed_keeps_once_pending():
    cfg = config(DB)
    first = plan(snap(proc()), cfg, {})
    history = record({}, first, NOW, attempted=first.actions)
    assert history[(100, 150.0)].handled_once is False
    assert plan(snap(proc(), time=NOW + 61), cfg, history).actions


residency = st.dictionaries(st.integers(0, 3), st.integers(0, 1 << 40), max_size=4)


@given(residency, st.sets(st.integers(0, 3), min_size=1))
def test_misplaced_bytes_are_exactly_those_outside_the_target(res, target):
    nodes = tuple(NODE0.__class__(id=n, cpus=frozenset({n}), mem_total=GiB, mem_free=GiB, has_cpu=True) for n in range(4))
    rule = {"match": {"comm": "postgres"}, "nodes": ",".join(map(str, sorted(target)))}
    result = plan(snap(proc(residency=res), nodes=nodes), config(rule), {})
    outside = sum(b for n, b in res.items() if n not in target)
    if outside == 0:
        assert result.actions == ()
    else:
        (action,) = result.actions
        assert action.kind == "migrate" and action.misplaced_bytes == outside
        assert action.from_nodes == {n for n, b in res.items() if n not in target and b}
        assert action.target_nodes == target


def test_every_checks_an_in_place_process_once_per_interval_not_every_tick():
    cfg = config({**DB, "once": False, "every": "30s"})
    placed = proc(residency={1: GiB})
    history = record({}, plan(snap(placed), cfg, {}), NOW)          # first sight: not due
    due = plan(snap(placed, time=NOW + 30), cfg, history)
    assert due.actions == () and due.checked == {(100, 150.0)}      # due, nothing to do
    history = record(history, due, NOW + 30)
    assert history[(100, 150.0)].last_checked == NOW + 30
    for t in (NOW + 31, NOW + 59):
        assert plan(snap(placed, time=t), cfg, history).checked == frozenset()
    assert plan(snap(proc(), time=NOW + 60), cfg, history).actions   # drifted, next check acts


def test_every_does_not_retry_what_the_kernel_refused():
    # The last migration left 1 MiB of shared pages on node 0 (refused without
    # move-all): re-enforcement waits until more than that has drifted.
    cfg = config({**DB, "every": "30s"})
    first = plan(snap(proc(residency={0: 1 << 20, 1: 64 << 20})), cfg, {})
    history = record({}, first, NOW, attempted=first.actions, completed=first.actions,
                     unmovable={(100, 150.0): 1 << 20})
    later = NOW + 31
    assert plan(snap(proc(residency={0: 1 << 20, 1: 64 << 20}), time=later), cfg, history).actions == ()
    drifted = plan(snap(proc(residency={0: 9 << 20, 1: 56 << 20}), time=later), cfg, history)
    assert [a.kind for a in drifted.actions] == ["migrate"]
    assert drifted.actions[0].misplaced_bytes == 9 << 20
