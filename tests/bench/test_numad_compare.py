"""The pure helpers of the numad side-by-side (bench/numad_compare.py), on literal /proc text."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from numad_compare import (
    all_settled,
    cpu_after_placement,
    cpu_ticks,
    crash_reason,
    node_pages,
    ratio,
    settle_time,
    side_by_side,
    stale_numad_pidfile,
    value_when_placed,
    vmstat_value,
)

NUMA_MAPS = """\
00400000 default file=/tmp/bin/busy_hold mapped=2 N0=1 N1=1 kernelpagesize_kB=4
7f0000000000 default anon=76800 dirty=76800 active=0 N0=38400 N1=38400 kernelpagesize_kB=4
7f2000000000 default anon=1024 dirty=1024 N1=2 kernelpagesize_kB=2048
7ffd00000000 default stack anon=3 dirty=3 N0=3 kernelpagesize_kB=4
7ffd10000000 default
"""


def test_node_pages_sums_every_mapping_in_4k_pages() -> None:
    # 1 + 38400 + 3 on node 0; 1 + 38400 + 2 huge pages (= 1024 4K pages) on node 1.
    assert node_pages(NUMA_MAPS) == {0: 38404, 1: 38401 + 1024}


def test_node_pages_of_a_process_without_pages_is_empty() -> None:
    assert node_pages("7ffd10000000 default\n") == {}
    assert node_pages("") == {}


def test_vmstat_value_reads_the_named_counter_only() -> None:
    text = "pgmigrate_success_extra 9\npgmigrate_success 153600\npgmigrate_fail 2\n"
    assert vmstat_value(text, "pgmigrate_success") == 153600
    with pytest.raises(KeyError):
        vmstat_value(text, "numa_pages_migrated")


def test_cpu_ticks_survive_a_comm_with_spaces_and_parentheses() -> None:
    stat = "42 (a) b (c)) S 1 42 42 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 3 0 1234 0 0"
    assert cpu_ticks(stat) == 325


def test_settle_time_is_the_start_of_the_last_run_of_placed_samples() -> None:
    samples = [
        (0.0, {0: 50, 1: 50}),
        (0.5, {0: 96, 1: 4}),   # placed on 0 for a moment ...
        (1.0, {0: 40, 1: 60}),  # ... then moved
        (1.5, {0: 4, 1: 96}),
        (2.0, {0: 0, 1: 100}),
    ]
    assert settle_time(samples) == (1, 1.5)


def test_settle_time_none_when_the_end_is_below_the_threshold() -> None:
    assert settle_time([(0.0, {0: 50, 1: 50}), (1.0, {0: 60, 1: 40})]) == (0, None)
    assert settle_time([]) == (None, None)
    assert settle_time([(0.0, {})]) == (None, None)


def test_settle_time_zero_when_already_placed() -> None:
    assert settle_time([(0.0, {1: 100}), (3.0, {0: 1, 1: 99})]) == (1, 0.0)


def test_all_settled_needs_every_workload() -> None:
    assert all_settled([3.0, 12.5, 0.0]) == 12.5
    assert all_settled([3.0, None]) is None
    assert all_settled([]) is None


def test_ratio_is_numad_py_over_numad_and_refuses_missing_values() -> None:
    assert ratio(3.0, 6.0) == 0.5
    assert ratio(None, 6.0) is None
    assert ratio(3.0, 0) is None


def test_side_by_side_shows_never_and_yes_no() -> None:
    rows = [
        {"figure": "seconds until placed", "numad": 20.5, "numad_py": None, "ratio": None},
        {"figure": "undid placement", "numad": True, "numad_py": False, "ratio": None},
        {"figure": "pages", "numad": 153600, "numad_py": 76800, "ratio": 0.5},
    ]
    lines = side_by_side(rows).splitlines()
    assert lines[0].split() == ["figure", "numad", "numad-py", "ratio"]
    assert lines[2].split()[-3:] == ["20.50", "never", "-"]
    assert lines[3].split()[-3:] == ["yes", "no", "-"]
    assert lines[4].split()[-3:] == ["153600", "76800", "0.50"]


def test_goal_met_only_with_the_end_state() -> None:
    from numad_compare import goal_met

    assert goal_met("<= 1.00", 0.0, end_state=False) is False  # moved nothing, placed nothing
    assert goal_met("<= 1.00", 0.9, end_state=True) is True
    assert goal_met("<= 1.00", 1.2, end_state=True) is False
    assert goal_met("<= 1.00", None, end_state=True) is False
    assert goal_met("-", 0.5, end_state=True) is None


def test_the_unscaled_bound_gets_its_own_row_beside_numad() -> None:
    import guest_numad

    def case(cpu: float, placed: int) -> dict:
        settled = {str(p): {"node": 0, "seconds": 10.0 if p < placed else None} for p in range(4)}
        return {"all_settled_seconds": 10.0 if placed == 4 else None, "first_log": 1.0, "exited_at": None,
                "pages_migrated": 1000, "cpu_seconds": cpu, "cpu_second_half": cpu / 2,
                "undid_placement": False, "undid_shim": False, "settled": settled}

    raw = {"count": 4, "window": 300, "idle": 1000,
           "busy": {"numad": case(20.0, 4), "numad-py": case(18.0, 4), guest_numad.RAW_BOUND: case(50.0, 3)},
           "idle_case": {"numad": case(9.0, 0), "numad-py": case(8.0, 0)}}
    rows = {r["id"]: r for r in guest_numad.table_rows(raw)}
    assert rows["n3"]["ratio"] == pytest.approx(0.9)
    assert rows["n3r"]["ratio"] == pytest.approx(2.5)
    assert "placed 3/4" in rows["n3r"]["figure"]
    assert (rows["n3p"]["numad"], rows["n3p"]["numad_py"]) == (20.0, 18.0)   # ms per page: 1,000 pages each
    raw["busy"]["numad"]["pages_migrated"] = 0
    assert next(r for r in guest_numad.table_rows(raw) if r["id"] == "n3p")["numad"] is None
    del raw["busy"][guest_numad.RAW_BOUND]
    assert "n3r" not in {r["id"] for r in guest_numad.table_rows(raw)}


def test_each_handover_shows_in_the_column_of_the_daemon_started_second() -> None:
    import guest_numad

    def case(handover: dict | None, undid_shim: bool) -> dict:
        settled = {str(p): {"node": 0, "seconds": 10.0} for p in range(4)}
        return {"all_settled_seconds": 10.0, "first_log": 1.0, "exited_at": None, "pages_migrated": 1000,
                "cpu_seconds": 5.0, "cpu_second_half": 1.0, "undid_placement": False, "undid_shim": undid_shim,
                "settled": settled, **({"handover": handover} if handover else {})}

    by_numad = {"daemon": "numad", "window": 300.0, "placed_before": 4, "moved": 2, "pages_migrated": 80_000}
    by_numad_py = {"daemon": "numad-py", "window": 60.0, "placed_before": 3, "moved": 0, "pages_migrated": 12}
    raw = {"count": 4, "window": 300, "idle": 1000,
           "busy": {"numad": case(by_numad_py, True), "numad-py": case(by_numad, False)},
           "idle_case": {"numad": case(None, False), "numad-py": case(None, False)}}
    rows = {r["id"]: r for r in guest_numad.table_rows(raw)}
    assert (rows["n6"]["numad"], rows["n6"]["numad_py"]) == ("2 of 4", "0 of 3")
    assert (rows["n6p"]["numad"], rows["n6p"]["numad_py"]) == ("80000 (300)", "12 (60)")
    assert (rows["n4s"]["numad"], rows["n4s"]["numad_py"]) == (True, False)


def test_cpu_after_placement_splits_the_window_at_the_last_settle() -> None:
    series = [(0.0, 10.0), (5.0, 14.0), (10.0, 18.0), (15.0, 18.5), (20.0, 19.0)]
    # settled at 9 s: the first sample at or after it is t=10 (18.0); then 1.0 s over 10 s.
    assert cpu_after_placement(series, 9.0, 10.0) == (8.0, 6.0)
    assert cpu_after_placement(series, None, 10.0) is None      # never placed
    assert cpu_after_placement(series, 20.0, 10.0) is None      # nothing after it


def test_the_end_state_rows_split_a_daemons_cpu_at_its_last_placement() -> None:
    import guest_numad

    placed = {"all_settled_seconds": 9.0, "startup_cpu": 10.0,
              "cpu_series": [(0.0, 10.0), (5.0, 14.0), (10.0, 18.0), (15.0, 18.5), (20.0, 19.0)]}
    never = {"all_settled_seconds": None, "startup_cpu": 1.0, "cpu_series": [(0.0, 1.0), (20.0, 5.0)]}
    assert [guest_numad._placement_cpu(placed, part) for part in (0, 1)] == [8.0, 6.0]
    assert guest_numad._placement_cpu(never, 0) is None


def test_value_when_placed_reads_the_series_at_the_kth_settle() -> None:
    series = [(0.0, 10.0), (5.0, 14.0), (10.0, 18.0), (15.0, 18.5)]
    times = [12.0, None, 4.0, 9.5]
    assert value_when_placed(series, times, 1, 10.0) == 4.0     # 1st settled at 4 s: the sample at 5 s
    assert value_when_placed(series, times, 3, 10.0) == 8.5     # 3rd at 12 s: the sample at 15 s
    assert value_when_placed(series, times, 4) is None          # only 3 ever settled
    assert value_when_placed(series, times, 0) is None
    assert value_when_placed(series, [16.0], 1) is None         # no sample after it


def test_the_k_rows_compare_both_daemons_at_the_fewer_placed() -> None:
    import guest_numad

    def case(settle: list, startup: float, cpu: list, pages: int) -> dict:
        return {"all_settled_seconds": None, "first_log": 1.0, "exited_at": None, "pages_migrated": pages,
                "cpu_seconds": cpu[-1][1] - startup, "cpu_second_half": 1.0, "undid_placement": False,
                "undid_shim": False,
                "settled": {str(p): {"node": 0, "seconds": s} for p, s in enumerate(settle)},
                "startup_cpu": startup, "cpu_series": cpu}

    numad = case([250.0, 260.0, None, None], 0.1, [(0.0, 0.1), (255.0, 9.1), (262.0, 12.1), (300.0, 13.0)], 82_000)
    numad_py = case([10.0, 20.0, 30.0, 36.0], 29.0, [(0.0, 29.0), (10.0, 32.0), (20.0, 35.0), (36.0, 39.0)],
                    163_000)
    never = case([None] * 4, 0.0, [(0.0, 0.0)], 0)
    raw = {"count": 4, "window": 300, "idle": 1000, "busy": {"numad": numad, "numad-py": numad_py},
           "idle_case": {"numad": never, "numad-py": never}}
    rows = {r["id"]: r for r in guest_numad.table_rows(raw)}
    assert "2 of 4" in rows["n3k"]["figure"]
    assert (rows["n3k"]["numad"], rows["n3k"]["numad_py"]) == (12.0, 6.0)
    assert rows["n3k"]["ratio"] == pytest.approx(0.5)
    assert (rows["n2w"]["numad"], rows["n2w"]["numad_py"]) == (41_000, 40_750)
    raw["busy"]["numad"] = never                           # placed none: nothing to compare per workload
    rows = {r["id"]: r for r in guest_numad.table_rows(raw)}
    assert rows["n2w"]["numad"] is None and rows["n3k"]["ratio"] is None


def test_crash_reason_is_the_kernels_word_for_that_comm_only() -> None:
    log = [
        "[   12.5] traps: other[88] trap int3 ip:1 sp:2 error:0",
        "[   34.227690] traps: numad[154] trap divide error ip:55d9711adc2e sp:7ffecc811650 error:0 in numad[55d9711ac000+8000]",
        "[   40.0] numad[160]: segfault at 0 ip 00005555 sp 00007ffe error 4 in numad[5555+8000]",
    ]
    assert crash_reason(log[:2], "numad") == "trap divide error"
    assert crash_reason(log, "numad") == "segfault"          # the last one
    assert crash_reason(log, "numad-py") is None
    assert crash_reason([], "numad") is None


def test_a_daemon_that_died_says_when_and_of_what() -> None:
    import guest_numad

    assert guest_numad._exited({"exited_at": None}) == "no"
    assert guest_numad._exited({"exited_at": 0.0, "crash": "trap divide error"}) == "at 0 s (trap divide error)"
    assert guest_numad._exited({"exited_at": 31.4, "crash": None}) == "at 31 s"


def test_a_numad_pidfile_is_stale_unless_its_pid_is_a_numad() -> None:
    assert not stale_numad_pidfile("154\n", "numad\n")      # a running numad: leave it
    assert stale_numad_pidfile("154\n", "spawn_idle\n")     # the PID was reused
    assert stale_numad_pidfile("154\n", None)                # nothing has that PID
    assert stale_numad_pidfile("", None) and stale_numad_pidfile("garbage", "numad")
