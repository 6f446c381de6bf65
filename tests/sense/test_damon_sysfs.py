"""The DAMON driver where the VM cannot serve: another tool holding DAMON, a claim left by an
earlier run, a kernel without DAMON; and the access sensor's pure helpers.  The driver's real
proof is tests/numa/test_tiering.py in the 6.12 guest."""

from __future__ import annotations

from pathlib import Path

import pytest

from numad_py.config.tier import Tier
from numad_py.decide.snapshot import ProcessAccess, RegionAccess
from numad_py.decide.tiering import classify, merge
from numad_py.sense.access import IDLE_CHUNK, SLIVER, Seen, clip, estimate_nodes, sample_pages
from numad_py.sense.damon import (
    CLAIM_FILE,
    NEEDS_DAMON,
    DamonError,
    Kdamond,
    RawRegion,
    missing_reason,
    read_tried_regions,
)

PAGE = 4096
MiB = 1 << 20


def fake_admin(tmp_path: Path, kdamonds: int, state: str = "off") -> Path:
    """The files a kdamond has before numad-py writes (the kernel makes the dirs on nr_* writes)."""
    admin = tmp_path / "admin"
    (admin / "kdamonds").mkdir(parents=True)
    (admin / "kdamonds/nr_kdamonds").write_text(f"{kdamonds}\n")
    for k in range(max(kdamonds, 1)):
        kd = admin / "kdamonds" / str(k)
        (kd / "contexts/0").mkdir(parents=True)
        (kd / "state").write_text(state + "\n")
        (kd / "contexts/nr_contexts").write_text("0\n")
        (kd / "contexts/0/operations").write_text("paddr\n")
    return admin


def test_a_kernel_without_damon_sysfs_says_what_it_needs(tmp_path):
    assert missing_reason(tmp_path / "nothing") == NEEDS_DAMON
    assert missing_reason(fake_admin(tmp_path, 0)) is None
    with pytest.raises(DamonError, match="needs DAMON"):
        Kdamond(tmp_path / "nothing").acquire()


def test_damon_set_up_by_another_tool_is_left_alone(tmp_path):
    admin = fake_admin(tmp_path, 1, state="on")
    with pytest.raises(DamonError, match=r"in use by another tool \(1 kdamond"):
        Kdamond(admin, claim_dir=tmp_path).acquire()
    assert (admin / "kdamonds/0/state").read_text() == "on\n"           # untouched
    assert (admin / "kdamonds/0/contexts/0/operations").read_text() == "paddr\n"


def test_our_claimed_kdamond_is_reused_and_released(tmp_path):
    admin = fake_admin(tmp_path, 1, state="on")
    (tmp_path / CLAIM_FILE).write_text("0\n")                           # an earlier run's, after a crash
    kd = Kdamond(admin, claim_dir=tmp_path)
    kd.acquire()
    assert kd.index == 0
    assert (admin / "kdamonds/0/state").read_text() == "off\n"          # stopped before reconfiguring
    assert (admin / "kdamonds/0/contexts/0/operations").read_text() == "vaddr\n"
    kd.release()
    assert (admin / "kdamonds/0/contexts/nr_contexts").read_text() == "0\n"
    assert not (tmp_path / CLAIM_FILE).exists()
    # nr_kdamonds stays: numad-py did not create that kdamond in this run
    assert (admin / "kdamonds/nr_kdamonds").read_text() == "1\n"


def test_a_fresh_kdamond_is_created_and_removed_again(tmp_path):
    admin = fake_admin(tmp_path, 0)
    kd = Kdamond(admin, claim_dir=tmp_path)
    kd.acquire()
    assert (admin / "kdamonds/nr_kdamonds").read_text() == "1\n"
    assert (tmp_path / CLAIM_FILE).read_text() == "0\n"
    kd.release()
    kd.release()                                                         # twice is fine
    assert (admin / "kdamonds/nr_kdamonds").read_text() == "0\n"


def test_tried_regions_are_read_in_address_order_and_a_vanished_one_is_skipped(tmp_path):
    tried = tmp_path / "tried_regions"
    (tried / "total_bytes").parent.mkdir()
    (tried / "total_bytes").write_text("0\n")
    for name, (start, end, acc, age) in {"0": (0x3000, 0x5000, 2, 7), "1": (0x1000, 0x3000, 0, 40)}.items():
        (tried / name).mkdir()
        for field, value in zip(("start", "end", "nr_accesses", "age"), (start, end, acc, age)):
            (tried / name / field).write_text(f"{value}\n")
    (tried / "2").mkdir()                                                # rebuilt by the kernel meanwhile
    assert read_tried_regions(tried) == [RawRegion(0x1000, 0x3000, 0, 40), RawRegion(0x3000, 0x5000, 2, 7)]
    assert read_tried_regions(tmp_path / "none") == []


def test_clip_keeps_only_the_parts_inside_the_rules_mappings():
    regions = [RawRegion(0x0, 0x10000, 0, 5), RawRegion(0x10000, 0x30000, 3, 1)]
    maps = [(0x8000, 0x18000), (0x20000, 0x22000)]
    assert clip(regions, maps) == [RawRegion(0x8000, 0x10000, 0, 5), RawRegion(0x10000, 0x18000, 3, 1),
                                   RawRegion(0x20000, 0x22000, 3, 1)]


def test_sampling_is_bounded_and_spread():
    pages = sample_pages(0x100000, 0x100000 + 1000 * PAGE, samples=16)
    assert len(pages) == 16 and pages[0] == 0x100000 and pages[-1] < 0x100000 + 1000 * PAGE
    assert sample_pages(0x1000, 0x3000) == [0x1000, 0x2000]
    # 3 of 4 sampled pages on node 2, one not present: 3/4 of the size on node 2
    assert estimate_nodes(4 * PAGE, [2, 2, -14, 2]) == {2: 3 * PAGE}
    assert estimate_nodes(PAGE, []) == {}


def test_idle_time_is_the_sensors_own_memory_of_accesses():
    seen = Seen()
    seen.note([RawRegion(0, 4 * MiB, 1, 30), RawRegion(4 * MiB, 8 * MiB, 0, 30)], now=100.0)
    seen.note([RawRegion(0, 8 * MiB, 0, 31)], now=105.0)      # a tick later: all looks idle
    pieces = seen.split(RawRegion(0, 8 * MiB, 0, 31), since=90.0)
    # 0-4 MiB was seen at 100 (the 2 MiB chunks a region with an access covered); 4-8 MiB never.
    assert [(r.start // MiB, r.end // MiB, when) for r, when, _, _ in pieces] == [(0, 4, 100.0), (4, 8, 90.0)]
    assert all((r.nr_accesses, r.age, streak) == (0, 31, 0) for r, _, streak, _ in pieces)


def test_a_large_idle_region_is_not_held_hot_by_its_edge():
    """DAMON's edges move: a 115 MiB idle region whose first MiB shared a 2 MiB chunk with the
    hot range must still be idle for the rest (the tiering VM run stalled on exactly this)."""
    seen = Seen()
    seen.note([RawRegion(0, 14 * MiB, 16, 0), RawRegion(14 * MiB, 128 * MiB, 0, 90)], now=50.0)
    seen.note([RawRegion(0, 13 * MiB, 16, 0), RawRegion(13 * MiB, 128 * MiB, 0, 91)], now=51.0)
    pieces = seen.split(RawRegion(13 * MiB, 128 * MiB, 0, 91), since=10.0)
    assert [(r.start // MiB, r.end // MiB, when) for r, when, _, _ in pieces] == [(13, 14, 51.0), (14, 128, 10.0)]


def test_the_hot_streak_counts_measurements_in_a_row_per_chunk():
    """A wide region hot for one look (DAMON has not split it yet) has streak 1 where it was
    not hot before; the part hot at both looks has streak 2; a gap restarts the count."""
    seen = Seen()
    seen.note([RawRegion(80 * MiB, 96 * MiB, 9, 0)], now=1.0)
    seen.note([RawRegion(48 * MiB, 120 * MiB, 5, 0)], now=2.0)
    pieces = seen.split(RawRegion(48 * MiB, 120 * MiB, 5, 0), since=0.0)
    assert [(r.start // MiB, r.end // MiB, streak, edge) for r, _, streak, edge in pieces] == \
        [(48, 50, 1, True), (50, 80, 1, False), (80, 96, 2, False), (96, 118, 1, False), (118, 120, 1, True)]
    # Two accessed regions meeting inside one chunk (95 MiB): the chunk's streak still counts.
    seen.note([RawRegion(80 * MiB, 95 * MiB, 9, 0), RawRegion(95 * MiB, 96 * MiB, 9, 0)], now=2.5)
    assert {streak for _, _, streak, _ in seen.split(RawRegion(80 * MiB, 96 * MiB, 9, 0), since=0.0)} == {3}
    seen.note([], now=3.0)
    seen.note([RawRegion(80 * MiB, 96 * MiB, 9, 0)], now=4.0)
    assert {streak for _, _, streak, _ in seen.split(RawRegion(80 * MiB, 96 * MiB, 9, 0), since=0.0)} == {1}


def test_a_hot_regions_edge_inside_a_chunk_makes_it_not_idle_but_not_hot():
    seen = Seen()
    for now in (1.0, 2.0):      # a hot region ending half way into the 96-98 MiB chunk, twice
        seen.note([RawRegion(80 * MiB, 97 * MiB, 9, 0), RawRegion(97 * MiB, 128 * MiB, 0, 9)], now=now)
    pieces = seen.split(RawRegion(80 * MiB, 100 * MiB, 9, 0), since=0.0)
    assert [(r.start // MiB, r.end // MiB, when, streak) for r, when, streak, _ in pieces] == \
        [(80, 82, 2.0, 2), (82, 94, 2.0, 2), (94, 96, 2.0, 2), (96, 98, 2.0, 0), (98, 100, 0.0, 0)]


def test_the_chunks_at_a_hot_runs_ends_are_marked_edge_and_counted_up_to_four():
    seen = Seen()
    for now in (1.0, 2.0, 3.0, 4.0, 5.0):
        seen.note([RawRegion(80 * MiB, 96 * MiB, 9, 0), RawRegion(96 * MiB, 128 * MiB, 0, 9)], now=now)
    pieces = seen.split(RawRegion(78 * MiB, 98 * MiB, 9, 0), since=0.0)
    assert [(r.start // MiB, r.end // MiB, streak, edge) for r, _, streak, edge in pieces] == \
        [(78, 80, 0, False), (80, 82, 4, True), (82, 94, 4, False), (94, 96, 4, True), (96, 98, 0, False)]


# The end of a hot run at 80-96 MiB as the tiered guest measured it after a switch: a cold
# DAMON region kept the run's last 24 KiB for 9 measurements in a row (issue 14).
HOT_END = 96 * MiB
SHORT_BY = 24 << 10
ON_SLOW = Tier(fast="0-1", slow="2", cold_after="3s", hot_min="5%")


def run_ending_at(end: int) -> list[RawRegion]:
    """A hot run from 80 MiB to ``end``, a cold region after it."""
    return [RawRegion(80 * MiB, 90 * MiB, 17, 0), RawRegion(90 * MiB, end, 15, 0),
            RawRegion(end, 104 * MiB, 0, 20)]


def promoted(seen: Seen, regions: list[RawRegion]) -> list[tuple[int, int]]:
    """The MiB ranges of 92-100 MiB the planner promotes from the sensor's pieces of
    ``regions``, all of them on the slow node."""
    pieces = [piece for r in clip(regions, [(92 * MiB, 100 * MiB)]) for piece in seen.split(r, since=0.0)]
    access = ProcessAccess(tuple(RegionAccess(r.start, r.end, r.nr_accesses, r.age, {2: r.end - r.start},
                                              idle_seconds=0.0, hot_streak=streak, hot_edge=edge)
                                 for r, _, streak, edge in pieces), sample_us=5000, aggr_us=100_000)
    return [(group[0].region.start // MiB, -(-group[-1].region.end // MiB))
            for group in merge(classify(access, ON_SLOW, frozenset({2}))) if group[0].tier == "fast"]


def test_an_end_chunk_a_cold_region_holds_a_sliver_of_is_promoted():
    seen = Seen()
    regions = run_ending_at(HOT_END - SHORT_BY)
    for now in range(1, 9):
        seen.note(regions, now=float(now))
        assert promoted(seen, regions) == ([(92, 96)] if now >= 4 else [(92, 94)] if now >= 2 else [])


def test_an_end_chunk_with_a_sliver_uncovered_in_alternate_measurements_is_promoted():
    seen = Seen()
    for now in range(1, 5):
        regions = run_ending_at(HOT_END - SHORT_BY if now % 2 else HOT_END)
        seen.note(regions, now=float(now))
    assert promoted(seen, regions) == [(92, 96)]


def test_the_cold_chunk_next_to_a_hot_run_is_never_promoted_however_the_boundary_strays():
    """The boundary strays into the cold 96-98 MiB (by up to 1.6 MiB seen in the guest; here
    by up to all of it but a sliver and a page): that chunk's streak never starts."""
    strays = [4 << 10, SHORT_BY, 600 << 10, 1290 << 10, 2 * MiB - SLIVER - (4 << 10)]
    seen = Seen()
    for now in range(1, 4 * len(strays) + 1):
        regions = run_ending_at(HOT_END + strays[now % len(strays)])
        seen.note(regions, now=float(now))
        assert seen.streak.get(96 * MiB // IDLE_CHUNK, 0) == 0
        assert all(end <= 96 for _start, end in promoted(seen, regions))


def test_a_chunk_short_of_more_than_a_sliver_is_not_covered_whole():
    seen = Seen()
    for now in range(1, 9):
        seen.note(run_ending_at(HOT_END - SLIVER - (4 << 10)), now=float(now))
    assert seen.streak.get(94 * MiB // IDLE_CHUNK, 0) == 0 and 92 * MiB // IDLE_CHUNK in seen.edge
