"""numad_py.numa.prescan on literal /proc text: which mappings a migration may move
without querying each page first, and the THP count from smaps."""

from __future__ import annotations

import os

from numad_py.numa import prescan
from numad_py.numa.chunks import without_settled
from numad_py.numa.prescan import (BlindRanges, Prescan, blind_intervals, parse_bounds, parse_huge_spans,
                                   parse_node_pages, settled_mappings)

MiB = 1 << 20

MAPS = b"""\
00400000-00401000 r-xp 00000000 fd:01 131 /usr/bin/hold
7f0000000000-7f0000400000 rw-p 00000000 00:00 0
7f0000400000-7f0000800000 rw-p 00000000 00:00 0
7f0000800000-7f0000c00000 rw-p 00000000 00:00 0 [heap]
7f0000c00000-7f0001000000 rw-s 00000000 00:01 77 /dev/hugepages/x
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
"""
# 0x400000 bytes = 1024 base pages per mapping.
NUMA_MAPS = b"""\
00400000 default file=/usr/bin/hold mapped=1 N0=1 kernelpagesize_kB=4
7f0000000000 default anon=1024 dirty=1024 N0=1024 kernelpagesize_kB=4
7f0000400000 prefer:1 anon=1000 dirty=1000 N0=999 N1=1 kernelpagesize_kB=4
7f0000800000 default heap anon=512 dirty=512 N0=512 kernelpagesize_kB=4
7f0000c00000 default file=/dev/hugepages/x huge dirty=2 N0=2 kernelpagesize_kB=2048
7ffd00000000 default stack anon=3 dirty=3 N0=3 kernelpagesize_kB=4
"""


def test_bounds_of_every_mapping():
    bounds = parse_bounds(MAPS)
    assert bounds[:2] == [(0x400000, 0x401000), (0x7F0000000000, 0x7F0000400000)]
    assert len(bounds) == 6


def test_node_pages_per_mapping_and_huge_tlb_not_read_as_base_pages():
    pages = parse_node_pages(NUMA_MAPS)
    assert pages[0x7F0000000000] == {0: 1024}
    assert pages[0x7F0000400000] == {0: 999, 1: 1}
    assert 0 not in pages[0x7F0000C00000]   # its counts are 2 MiB pages


def test_blind_only_where_no_page_is_on_a_target_and_the_mapping_is_dense():
    bounds, pages = parse_bounds(MAPS), parse_node_pages(NUMA_MAPS)
    # To node 1: the text page and the first anon mapping (all on node 0); not the mapping
    # with one page on node 1, not the half-present heap, not hugetlb, not the sparse stack.
    assert blind_intervals(bounds, pages, {1}) == [(0x400000, 0x401000), (0x7F0000000000, 0x7F0000400000)]
    assert blind_intervals(bounds, pages, {0}) == []          # every mapping has pages there
    assert blind_intervals(bounds, pages, {1, 2}) == blind_intervals(bounds, pages, {1})
    assert blind_intervals(bounds, pages, {0, 1}) == []       # a target set counts all its nodes


def test_settled_where_every_present_page_is_on_a_target():
    bounds, pages = parse_bounds(MAPS), parse_node_pages(NUMA_MAPS)
    # To node 0: all but the mapping with a page on node 1 and the hugetlb one (unknown counts);
    # the half-present heap and the sparse stack too, with their pages present.
    assert settled_mappings(bounds, pages, {0}) == [
        (0x400000, 0x401000, 1), (0x7F0000000000, 0x7F0000400000, 1024),
        (0x7F0000800000, 0x7F0000C00000, 512), (0x7FFD00000000, 0x7FFD00021000, 3)]
    assert settled_mappings(bounds, pages, {0, 1})[1:3] == [
        (0x7F0000000000, 0x7F0000400000, 1024), (0x7F0000400000, 0x7F0000800000, 1000)]
    assert settled_mappings(bounds, pages, {1}) == []
    # A mapping with no page present is not settled: the kernel may call it unmovable.
    assert settled_mappings([(0x1000, 0x3000)], {0x1000: {}}, {0}) == []


def test_settled_mappings_wholly_inside_a_span_are_cut_out_and_counted():
    page = 4096
    settled = [(0x10000, 0x20000, 10), (0x30000, 0x40000, 16), (0x50000, 0x60000, 16)]
    # One span over the first two mappings and the gap between them; the third reaches past it.
    spans = [(0x10000, (0x40000 - 0x10000) // page), (0x58000, 8)]
    left, already, absent = without_settled(spans, settled)
    assert left == [(0x20000, 16), (0x58000, 8)]       # the gap; the span inside the third, walked
    assert (already, absent) == (26, 6)                 # 10 + 16 present, 16 - 10 holes
    assert without_settled([(0x10000, 16)], []) == ([(0x10000, 16)], 0, 0)
    assert without_settled([(0x10000, 16)], [(0x10000, 0x20000, 16)]) == ([], 16, 0)


def test_adjacent_blind_mappings_merge_and_unlisted_mappings_are_not_blind():
    bounds = [(0x1000, 0x3000), (0x3000, 0x5000), (0x9000, 0xA000)]
    pages = {0x1000: {0: 2}, 0x3000: {0: 2}}
    assert blind_intervals(bounds, pages, {1}) == [(0x1000, 0x5000)]


def test_blind_ranges_say_where_the_kind_of_chunk_changes():
    blind = BlindRanges([(0x10000, 0x20000), (0x30000, 0x40000)])
    assert blind.at(0x0, 0x100000) == (False, 0x10000)
    assert blind.at(0x10000, 0x100000) == (True, 0x20000)
    assert blind.at(0x18000, 0x19000) == (True, 0x19000)      # clipped to the range's end
    assert blind.at(0x20000, 0x100000) == (False, 0x30000)
    assert blind.at(0x40000, 0x100000) == (False, 0x100000)
    assert BlindRanges().at(0x5000, 0x9000) == (False, 0x9000)


def test_huge_spans_from_smaps_headers():
    smaps = (b"7f0000000000-7f0000400000 rw-p 00000000 00:00 0\nSize:  4096 kB\nAnonHugePages:  4096 kB\n"
             b"VmFlags: rd wr mr mw me ac hg\n"
             b"7f0000400000-7f0000401000 rw-p 00000000 00:00 0 /a name\nAnonHugePages:     0 kB\n")
    assert parse_huge_spans(smaps) == [(0x7F0000000000, 0x7F0000400000, 4 * MiB),
                                       (0x7F0000400000, 0x7F0000401000, 0)]


def test_numa_maps_read_only_for_a_good_share_of_the_process():
    pid = os.getpid()
    assert not prescan.worth_reading(pid, prescan.MIN_PAGES - 1)
    assert prescan.worth_reading(pid, 1 << 40)
    assert not prescan.worth_reading(2 ** 22 + 1, 1 << 40)   # no such pid: nothing to read


def test_own_process_reads_cleanly():
    assert prescan.huge_pages_in(os.getpid(), [(0, 1 << 47)]) >= 0
    assert isinstance(prescan.read_prescan(os.getpid(), {0}, 1 << 30), Prescan)


# --- packing: one call covers many small mappings ---------------------------------

PAGE = 4096
HUGE = 2 * MiB


def test_pieces_split_spans_by_kind_and_keep_address_order():
    from numad_py.numa.chunks import pieces_by_kind

    blind = BlindRanges([(0x20000, 0x30000)])
    spans = [(0x10000, 4), (0x1C000, 8), (0x40000, 2)]     # the second crosses into the blind interval
    assert pieces_by_kind(spans, blind) == [(True, [(0x20000, 4)]),
                                     (False, [(0x10000, 4), (0x1C000, 4), (0x40000, 2)])]


def test_small_pieces_share_a_chunk_and_the_big_one_fills_the_rest_on_a_huge_boundary():
    from numad_py.numa.chunks import next_chunk

    big = 0x7F0000000000                                    # huge-aligned, 1,024 pages
    pieces = [(0x400000, 1), (0x401000, 3), (big - HUGE + 0x1000, 511), (big, 1024)]
    runs, at, end = next_chunk(pieces, (0, 0), 1024)
    # 1 + 3 + 511 pages, then 512 of the big one would end inside a THP (1024 - 515 = 509
    # left): the big piece waits rather than split one.
    assert runs == [(0x400000, 1), (0x401000, 3), (big - HUGE + 0x1000, 511)]
    assert at == (3, 0) and end == big
    runs, at, end = next_chunk(pieces, at, 600)             # alone, it is split on a boundary
    assert runs == [(big, 512)] and at == (3, 512) and end == big + 1024 * PAGE
    runs, at, end = next_chunk(pieces, at, 600)
    assert runs == [(big + 512 * PAGE, 512)] and at == (4, 0)


def test_a_chunk_takes_whole_pieces_then_part_of_one_that_ends_on_a_huge_boundary():
    from numad_py.numa.chunks import next_chunk

    big = 0x7F0000000000
    pieces = [(0x400000, 24), (big + 488 * PAGE, 2000)]     # the big one reaches a boundary after 24 pages
    runs, at, _end = next_chunk(pieces, (0, 0), 100)
    assert runs == [(0x400000, 24), (big + 488 * PAGE, 24)]
    assert at == (1, 24)
    # Where no boundary is in reach, a piece that starts a chunk is cut at the room.
    runs, at, _end = next_chunk([(big + PAGE, 2000)], (0, 0), 100)
    assert runs == [(big + PAGE, 100)] and at == (0, 100)


def test_packed_chunks_ask_for_the_room_before_each_chunk_and_name_each_runs_piece():
    from numad_py.numa.chunks import packed_chunks

    pieces = [(0x400000, 3), (0x500000, 5), (0x600000, 10)]
    rooms = iter([4, 2, 100])                                # as a stall bound resizing the batch
    chunks = list(packed_chunks(pieces, lambda: next(rooms)))
    # room 4: piece 0 whole; a page of piece 1 would not end on a huge page boundary, so piece 1
    # waits.  Room 2: it starts the chunk and is cut there.  Then the rest of it, and piece 2.
    assert chunks == [(0, [(0x400000, 3)], 0x403000),
                      (1, [(0x500000, 2)], 0x505000),
                      (1, [(0x502000, 3), (0x600000, 10)], 0x600000 + 10 * PAGE)]
