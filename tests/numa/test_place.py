"""place_ranges: page i of each range on the weighted round-robin's node, packed into few calls.

The split is checked page by page with a raw move_pages query and per mapping with
numa_maps, both independent of the code under test.
"""

from __future__ import annotations

import os

import pytest

from numad_py import numa

from conftest import mappings_on_node0, numa_maps_of, smaps_field

PAGE = numa.PAGE_SIZE
HUGE = 2 << 20
HUGE_PAGES = HUGE // PAGE


@pytest.mark.topology("two")
def test_many_small_ranges_are_placed_in_one_call_each_from_its_own_first_page():
    """96 mappings of 32 pages on node 0, the ranges leaving out each mapping's last page:
    one move_pages call covers them all (one call per range before), page i of every range
    lands on node i % 2, and the left-out pages stay put."""
    count, pages_each = 96, 32
    size = pages_each * PAGE
    _bufs, addrs = mappings_on_node0(count, size)
    ranges = [(a, a + size - PAGE) for a in addrs]
    placed_pages = pages_each - 1

    result = numa.place_ranges(os.getpid(), ranges, {0: 1, 1: 1}, max_stall=None)   # 4,096-page batches

    to_node1 = placed_pages // 2                     # the odd pages of 31
    assert (result.moved, result.already, result.failed_total, result.calls) == \
        (count * to_node1, count * (placed_pages - to_node1), 0, 1), result.to_dict()
    for addr in addrs:
        nodes = numa.query_pages(os.getpid(), [addr + i * PAGE for i in range(pages_each)])
        assert nodes == [i % 2 for i in range(placed_pages)] + [0], hex(addr)
    assert [numa_maps_of(os.getpid(), a) for a in addrs] == \
        [{0: (placed_pages - to_node1 + 1) * PAGE, 1: to_node1 * PAGE}] * count


@pytest.mark.topology("two")
def test_huge_pages_are_placed_whole_a_unit_each_and_chunks_end_on_their_boundaries(workload, thp_enabled):
    """A 16 MiB THP mapping on node 0, interleaved 1:1 with 1,024-page batches: the unit is the
    huge page, counted from 2 MiB boundaries, so every THP stays whole on one node and the
    huge pages alternate; four calls of 2 huge pages each."""
    child = workload("--mib", 16, "--thp", "--node", 0)
    start, end = child.region()
    pages = (end - start) // PAGE
    huge = smaps_field(child.pid, start, "AnonHugePages") // HUGE
    assert huge == pages // HUGE_PAGES, "the workload's region is not all huge pages"

    result = numa.place_ranges(child.pid, [(start, end)], {0: 1, 1: 1}, batch_pages=1024, max_stall=None)

    assert (result.moved, result.already, result.failed_total, result.calls) == \
        (pages // 2, pages // 2, 0, pages // 1024), result.to_dict()
    first_unit = start // HUGE
    nodes = numa.query_pages(child.pid, list(range(start, end, PAGE)))
    assert nodes == [(first_unit + i // HUGE_PAGES) % 2 for i in range(pages)]
    assert smaps_field(child.pid, start, "AnonHugePages") // HUGE == huge
