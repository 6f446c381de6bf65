"""Placing pages of a running process by weighted round-robin (interleave, weighted-interleave).

Another process's memory policy cannot be set from outside, but its pages can
be moved: page *i* of each range goes to the node the weighted round-robin
gives it (``policyspec.node_of_page``), the split a weighted-interleave policy
would have made.  Same chunking, budget hook and stall bound as
:func:`numad_py.numa.migrate.migrate_ranges`, and the same packing: one call
covers as many small ranges as fit in a batch (a whole process is a range per
mapping).  Only the per-page target differs (a page on another node of the set
is moved too, so the split is exact), so every chunk is queried first.

Where a mapping holds transparent huge pages, the unit of the round-robin is
the 2 MiB huge page (its 512 base pages share one node): the kernel moves a
THP whole, so per-base-page targets would bounce it between nodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import procfs
from .._numa import ffi, lib
from ..errors import InvalidArgument, NumaError
from ..policyspec import weighted_pattern
from ..stall import DEFAULT_MAX_STALL
from .masks import HUGE_PAGE_SIZE, PAGE_SIZE, check_nodes
from .migrate import MAX_BATCH, _batch_policy, _ChunkLoop, _page_range, _scratch, _Scratch, chunk_result
from .results import MigrationResult

HUGE_UNIT = HUGE_PAGE_SIZE // PAGE_SIZE


def place_ranges(
    pid: int,
    ranges: Sequence[tuple[int, int]],
    weights: dict[int, int],
    *,
    move_all: bool = False,
    batch_pages: int | None = None,
    next_batch: Callable[[int, float], int] | None = None,
    max_stall: float | None = DEFAULT_MAX_STALL,
    before_chunk: Callable[[int], None] | None = None,
    after_chunk: Callable[[int, int], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    checked: bool = False,
) -> MigrationResult:
    """Move the pages of ``ranges`` of ``pid`` so page i sits on the weighted round-robin's node.

    ``weights``: node -> weight (1 each for plain interleave).  Options as
    :func:`~numad_py.numa.migrate.migrate_ranges`.
    """
    if not weights:
        raise InvalidArgument("weighted placement needs at least one node")
    nodes = sorted(weights if checked else check_nodes(weights))
    pattern = weighted_pattern(weights)
    pieces = [_page_range(start, end) for start, end in ranges]
    total_pages = sum(n for _first, n in pieces)
    result = MigrationResult(pid=pid, target=frozenset(nodes))
    if not total_pages:
        return result
    batch, adapt = _batch_policy(batch_pages, next_batch, max_stall)
    batch = max(1, min(MAX_BATCH, batch))
    scratch = _scratch(min(MAX_BATCH, total_pages))
    c_pattern = ffi.new("int[]", list(pattern))
    flags = lib.MPOL_MF_MOVE_ALL if move_all else lib.MPOL_MF_MOVE
    orders = _round_robin_orders(pieces, _huge_mappings(pid))
    loop = _ChunkLoop(batch, adapt, scratch, total_pages=total_pages, done_pages=0,
                      before_chunk=before_chunk, after_chunk=after_chunk, progress=progress,
                      cancelled=cancelled)

    def move(piece: int, runs: list[tuple[int, int]], _piece_end: int, _count: int) -> MigrationResult:
        # Run k is part of piece + k: its first page's place in that piece's round-robin.
        indexes = [(orders[piece + k][0] + (addr - pieces[piece + k][0]) // PAGE_SIZE, orders[piece + k][1])
                   for k, (addr, _npages) in enumerate(runs)]
        return _place_chunk(pid, runs, indexes, c_pattern, len(pattern), flags, scratch, nodes)

    t0 = time.monotonic()
    loop.run(pieces, move, result)
    result.pages_requested = total_pages
    result.seconds = time.monotonic() - t0
    return result


def _round_robin_orders(pieces: Sequence[tuple[int, int]], huge: list[tuple[int, int]],
                        ) -> list[tuple[int, int]]:
    """Per piece (first address, pages): the round-robin index of its first page and the
    unit.  Page i of a range is index i; in a mapping holding THPs the unit is the huge
    page and units count from 2 MiB boundaries, so one THP is one unit."""
    orders = []
    for first, npages in pieces:
        if _overlaps(first, first + npages * PAGE_SIZE, huge):
            orders.append((first // PAGE_SIZE, HUGE_UNIT))
        else:
            orders.append((0, 1))
    return orders


def _huge_mappings(pid: int) -> list[tuple[int, int]]:
    """(start, end) of the mappings holding transparent huge pages."""
    try:
        huge = procfs.anon_huge_bytes(pid)
        return [(m.start, m.end) for m in procfs.maps(pid) if huge.get(m.start, 0)]
    except NumaError:
        return []


def _overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return any(s < end and start < e for s, e in spans)


def _place_chunk(pid: int, runs: Sequence[tuple[int, int]], indexes: Sequence[tuple[int, int]],
                 c_pattern: Any, npattern: int, flags: int, scratch: _Scratch,
                 nodes: Sequence[int]) -> MigrationResult:
    """One chunk over ``runs`` (address, pages) in one ``lib.nd_place_segments`` call;
    ``indexes``: each run's first round-robin index and unit."""
    res = ffi.new("struct nd_chunk_result *")
    starts = ffi.new("uintptr_t[]", [addr for addr, _pages in runs])
    counts = ffi.new("unsigned long[]", [npages for _addr, npages in runs])
    firsts = ffi.new("unsigned long[]", [index for index, _unit in indexes])
    units = ffi.new("unsigned long[]", [unit for _index, unit in indexes])
    rc = lib.nd_place_segments(pid, starts, counts, firsts, units, len(runs), PAGE_SIZE, c_pattern, npattern,
                               flags, scratch.pages, scratch.nodes, scratch.status, scratch.after, res)
    return chunk_result(rc, res, pid, flags, nodes)
