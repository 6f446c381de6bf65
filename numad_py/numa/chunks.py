"""How a migration's address ranges become chunks: pure arithmetic over addresses.

Spans (first address, pages) lose the mappings numa_maps showed settled, are cut where
the query may be skipped, and are packed into chunks of at most a batch, each one
``move_pages`` call (:func:`.migrate.migrate_ranges` makes the calls).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence

from .masks import HUGE_PAGE_SIZE, PAGE_SIZE
from .prescan import BlindRanges


def without_settled(spans: list[tuple[int, int]], settled: Sequence[tuple[int, int, int]],
                    ) -> tuple[list[tuple[int, int]], int, int]:
    """``spans`` (first address, pages) without the settled mappings wholly inside one
    (:func:`.prescan.settled_mappings`): what is left to walk, and the pages skipped
    that are present (already there) and absent (not present)."""
    left: list[tuple[int, int]] = []
    already = absent = 0
    starts = [lo for lo, _hi, _present in settled]   # sorted, disjoint (one per mapping)
    for first, npages in spans:
        end = first + npages * PAGE_SIZE
        addr = first
        # Only the mappings that start inside this span: a whole process is one span per
        # mapping, so a scan of every settled mapping per span would be quadratic.
        for lo, hi, present in settled[bisect.bisect_left(starts, first):bisect.bisect_left(starts, end)]:
            if hi > end:
                continue
            if lo > addr:
                left.append((addr, (lo - addr) // PAGE_SIZE))
            present = min(present, (hi - lo) // PAGE_SIZE)
            already += present
            absent += (hi - lo) // PAGE_SIZE - present
            addr = hi
        if addr < end:
            left.append((addr, (end - addr) // PAGE_SIZE))
    return left, already, absent


def pieces_by_kind(spans: list[tuple[int, int]], blind: BlindRanges) -> list[tuple[bool, list[tuple[int, int]]]]:
    """``spans`` (first address, pages) cut where ``blind`` changes its answer, sorted into
    the pieces to move without a query and those to query first, each kind in address order."""
    unqueried: list[tuple[int, int]] = []
    queried: list[tuple[int, int]] = []
    for first, npages in spans:
        end = first + npages * PAGE_SIZE
        addr = first
        while addr < end:
            is_blind, kind_end = blind.at(addr, end)
            (unqueried if is_blind else queried).append((addr, (kind_end - addr) // PAGE_SIZE))
            addr = kind_end
    return [(True, unqueried), (False, queried)]


def next_chunk(pieces: Sequence[tuple[int, int]], at: tuple[int, int], room: int,
               ) -> tuple[list[tuple[int, int]], tuple[int, int], int]:
    """The runs of the next chunk of at most ``room`` pages, from piece ``at[0]`` with its
    first ``at[1]`` pages done: whole pieces while they fit, then the part of the next one
    that fills the room.  That part ends on a huge page boundary when it can (the kernel
    moves a THP whole); where it cannot and the chunk holds runs already, the piece waits
    for the next chunk.  Returns the runs, where the next chunk starts, and the end of the
    piece the last run belongs to."""
    index, offset = at
    runs: list[tuple[int, int]] = []
    total = 0
    piece_end = 0
    while index < len(pieces) and total < room:
        first, npages = pieces[index]
        addr, left = first + offset * PAGE_SIZE, npages - offset
        if left <= room - total:
            take = left
        else:
            take = huge_aligned(addr, room - total, left)
            if runs and (addr + take * PAGE_SIZE) % HUGE_PAGE_SIZE:
                break
        runs.append((addr, take))
        total += take
        piece_end = first + npages * PAGE_SIZE
        index, offset = (index + 1, 0) if take == left else (index, offset + take)
        if take < left:
            break
    return runs, (index, offset), piece_end


def packed_chunks(pieces: Sequence[tuple[int, int]], room: Callable[[], int],
                  ) -> Iterator[tuple[int, list[tuple[int, int]], int]]:
    """:func:`next_chunk` over all of ``pieces``, ``room()`` pages at a time (asked per chunk:
    the stall bound changes the batch as the chunks go).  Yields the piece the first run is
    part of (run k is part of piece that + k), the runs, and the end of the last run's piece."""
    at = (0, 0)
    while at[0] < len(pieces):
        runs, following, piece_end = next_chunk(pieces, at, room())
        yield at[0], runs, piece_end
        at = following


def huge_ceiling(addr: int) -> int:
    return -(-addr // HUGE_PAGE_SIZE) * HUGE_PAGE_SIZE


def huge_aligned(addr: int, count: int, remaining: int) -> int:
    """End a chunk on a huge page boundary when it can, so no THP is split across two
    chunks (the kernel moves a THP whole).  With batches under 512 pages it cannot;
    :class:`.migrate._HugeTail` then counts the tail the kernel moved along."""
    if count >= remaining:
        return count
    end = addr + count * PAGE_SIZE
    aligned = end - end % HUGE_PAGE_SIZE
    return (aligned - addr) // PAGE_SIZE if aligned > addr else count
