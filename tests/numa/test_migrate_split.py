"""migrate_range's counts when it skips the query before a move (issue 17).

Where numa_maps shows a mapping with no page on the target, the move runs
without a query first; anywhere else each chunk is queried as before.  The
split moved / already there / not present must be exactly right either way,
checked against independent views: numa_maps and a raw move_pages query.
"""

from __future__ import annotations

import ctypes
import mmap
import os

import pytest

from numad_py import numa
from numad_py.numa import Mode

from conftest import mappings_on_node0, numa_maps_of, smaps_field

MiB = 1 << 20
PAGE = numa.PAGE_SIZE
SIZE = 64 * MiB
HUGE = 2 * MiB
PAGES = SIZE // PAGE
MADV_DONTNEED = 4

_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def statuses(pid: int, start: int, end: int) -> list[int]:
    return numa.query_pages(pid, list(range(start, end, PAGE)))


@pytest.mark.topology("two")
def test_range_half_already_on_target_reports_the_split(workload):
    """The first half moved earlier: the whole range then moves half and finds half there."""
    child = workload("--mib", 64, "--node", 0)
    start, end = child.region()
    mid = start + SIZE // 2
    first = numa.migrate_range(child.pid, start, mid, {1})
    assert (first.moved, first.already) == (PAGES // 2, 0)
    before = child.checksum()

    result = numa.migrate_range(child.pid, start, end, {1})

    assert (result.moved, result.already, result.not_present, result.failed_total) == (PAGES // 2, PAGES // 2, 0, 0)
    assert result.pages_queried == PAGES   # the mapping had pages on the target: every chunk asks
    assert numa_maps_of(child.pid, start) == {1: SIZE}
    assert child.checksum() == before


@pytest.mark.topology("two")
def test_every_other_page_already_on_target_reports_the_split(workload):
    child = workload("--mib", 16, "--node", 0)
    start, end = child.region()
    pages = (end - start) // PAGE
    odd = list(range(start + PAGE, end, 2 * PAGE))
    assert set(numa.move_pages(child.pid, odd, [1] * len(odd))) == {1}

    result = numa.migrate_range(child.pid, start, end, {1}, batch_pages=1000, max_stall=None)

    assert (result.moved, result.already, result.failed_total) == (pages // 2, pages // 2, 0), result.to_dict()
    assert set(statuses(child.pid, start, end)) == {1}


@pytest.mark.topology("two")
def test_mapping_with_nothing_on_target_moves_without_a_query(workload):
    child = workload("--mib", 64, "--node", 0)
    start, end = child.region()
    before = child.checksum()

    result = numa.migrate_range(child.pid, start, end, {1})

    assert (result.moved, result.already, result.not_present, result.failed_total) == (PAGES, 0, 0, 0)
    assert result.pages_queried == 0
    assert numa_maps_of(child.pid, start) == {1: SIZE}
    assert child.checksum() == before
    # Back and forth: each direction starts with nothing on its target.
    back = numa.migrate_range(child.pid, start, end, {0})
    assert (back.moved, back.already, back.pages_queried) == (PAGES, 0, 0)
    # Nothing left to move: the mapping is all on the target, counted from numa_maps, not walked.
    again = numa.migrate_range(child.pid, start, end, {0})
    assert (again.moved, again.already, again.calls, again.pages_queried) == (0, PAGES, 0, 0)


@pytest.mark.topology("two")
def test_thp_without_a_query_counts_every_page_and_keeps_them_huge(workload, thp_enabled):
    child = workload("--mib", 16, "--thp", "--node", 0)
    start, end = child.region()
    pages = (end - start) // PAGE
    huge = smaps_field(child.pid, start, "AnonHugePages") // HUGE

    result = numa.migrate_range(child.pid, start, end, {1}, batch_pages=100, max_stall=None,
                                count_huge_pages=True)

    assert (result.moved, result.already, result.failed_total) == (pages, 0, 0), result.to_dict()
    assert result.pages_queried == 0
    assert result.huge_pages == huge >= 4
    assert set(statuses(child.pid, start, end)) == {1}


@pytest.mark.topology("two")
def test_absent_and_zero_pages_in_a_mapping_moved_without_a_query_count_as_not_present():
    """This process's own mapping: 15 of 16 pages written, every 16th dropped again
    (MADV_DONTNEED) and then read, so it maps the shared zero page.  Its bind policy
    stays: move_pages does not consult it."""
    size = 32 * MiB
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf.madvise(mmap.MADV_NOHUGEPAGE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    numa.mbind(addr, size, Mode.BIND, {0})
    for off in range(0, size, PAGE):
        buf[off] = 1
    holes = range(addr, addr + size, 16 * PAGE)
    for hole in holes:
        assert _libc.madvise(hole, PAGE, MADV_DONTNEED) == 0, os.strerror(ctypes.get_errno())
    assert sum(buf[off] for off in range(0, size, 16 * PAGE)) == 0  # reads map the zero page
    pages = size // PAGE

    result = numa.migrate_range(os.getpid(), addr, addr + size, {1}, max_stall=None)

    assert result.pages_queried == 0
    assert (result.moved, result.already, result.failed_total) == (pages - len(holes), 0, 0), result.to_dict()
    assert result.not_present == len(holes)
    assert numa_maps_of(os.getpid(), addr) == {1: size - len(holes) * PAGE}


@pytest.mark.topology("two")
def test_only_the_mapping_with_pages_off_target_is_walked():
    """Two mappings of this process on node 0 but for one page of the second on node 1
    (different policies, so the kernel keeps them apart).  Moving both to node 0 walks
    only the second: the first is counted there from numa_maps."""
    size = 16 * MiB
    pages = size // PAGE
    _bufs, addrs = mappings_on_node0(2, size)
    assert numa.move_pages(os.getpid(), [addrs[1] + 5 * PAGE], [1]) == [1]

    result = numa.migrate_ranges(os.getpid(), [(a, a + size) for a in addrs], {0}, max_stall=None)

    assert (result.moved, result.already, result.not_present, result.failed_total) == (1, 2 * pages - 1, 0, 0), \
        result.to_dict()
    assert result.pages_queried == pages     # the second mapping only
    assert [numa_maps_of(os.getpid(), a) for a in addrs] == [{0: size}, {0: size}]


@pytest.mark.topology("two")
def test_many_small_mappings_move_in_one_call_and_the_pages_between_them_stay():
    """128 mappings of 32 pages on node 0 (alternating policies keep them apart); the ranges
    leave out each mapping's last page.  Either kind of chunk covers all 128 ranges in one
    move_pages call (one call per mapping before), and the pages left out stay put."""
    count, pages_each = 128, 32
    size = pages_each * PAGE
    _bufs, addrs = mappings_on_node0(count, size)
    ranges = [(a, a + size - PAGE) for a in addrs]
    left_out = [a + size - PAGE for a in addrs]
    moving = count * (pages_each - 1)

    there = numa.migrate_ranges(os.getpid(), ranges, {1}, max_stall=None)   # fixed 4,096-page batches

    assert (there.moved, there.already, there.failed_total, there.calls) == (moving, 0, 0, 1), there.to_dict()
    assert there.pages_queried == 0          # no page on node 1: moved without a query
    assert set(numa.query_pages(os.getpid(), left_out)) == {0}
    assert {n for a in addrs for n in numa_maps_of(os.getpid(), a)} == {0, 1}

    # Back: every mapping now has its left-out page on the target, so each chunk is queried.
    back = numa.migrate_ranges(os.getpid(), ranges, {0}, max_stall=None)

    assert (back.moved, back.already, back.failed_total, back.calls) == (moving, 0, 0, 1), back.to_dict()
    assert back.pages_queried == moving
    assert [numa_maps_of(os.getpid(), a) for a in addrs] == [{0: size}] * count
