"""Moving and locating the pages of any process: move_pages and migrate_pages.

Large batches live in cffi arrays and are tallied in C: no per-page Python
objects on the hot path.  cffi releases the GIL around each C call, so a long
``move_pages`` does not block other threads.  Every call honours a stall
bound: the batch adapts so one call stays under ``max_stall`` (the daemon's
executor passes its own policy; direct callers get the same default).

A chunk is queried before its move only where it must be: mappings that
numa_maps shows with no page on a target are moved straight away, and
mappings with every page on one are not walked at all (:mod:`.prescan`).
One call covers as many small mappings as fit in a batch: each call pays a
fixed cost (the kernel drains every CPU's page lists first), and a whole
process is often a hundred mappings of a few pages (a python3 in the guest:
84-143 calls before, 8-9 now).  The arrays are allocated once per thread,
not per call.
"""

from __future__ import annotations

import errno
import threading
import time
from collections import Counter
from functools import partial
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .. import procfs
from .._numa import ffi, lib
from ..errors import InvalidArgument, InvalidNode, NumaError, page_outcome_name, raise_for_errno
from ..nodes import NodeListError, format_nodes, parse_nodes
from ..stall import DEFAULT_MAX_STALL, StallPolicy
from .chunks import huge_ceiling, packed_chunks, pieces_by_kind, without_settled
from .masks import MASK_BITS, PAGE_SIZE, check_nodes, nodemask
from .prescan import huge_pages_in, read_prescan
from .results import MigrationResult, ProcessMigration

MAX_BATCH = 65536          # pages per move_pages call, the upper clamp
DEFAULT_BATCH = 4096       # fixed batch when no stall bound is asked for (max_stall=None)
HAS_MEMORY = "/sys/devices/system/node/has_memory"


def raise_syscall_error(err: int, *, op: str, pid: int, targets: Iterable[int] = ()) -> None:
    """Raise what a failed move_pages/migrate_pages means, with the real cause when we can tell.

    EACCES/EPERM as root is most often the target's cpuset: the kernel refuses
    destination nodes outside the target's ``cpuset.mems.effective``; say so
    rather than blame a missing capability.  EINVAL on a process whose
    address space is gone means it is exiting.
    """
    if err in (errno.EACCES, errno.EPERM):
        refusal = _cpuset_refusal(pid, targets)
        if refusal is not None:
            raise refusal
    raise_for_errno(err, op=op, pid=pid, exiting=procfs.address_space_released)


def _cpuset_refusal(pid: int, targets: Iterable[int]) -> InvalidNode | None:
    wanted = frozenset(targets)
    try:
        allowed = procfs.mems_allowed(pid)
        cgroup = procfs.cgroup_path(pid)
    except NumaError:
        return None
    if not wanted or allowed is None or wanted <= allowed:
        return None
    where = f"its cgroup {cgroup}" if cgroup else "its cpuset"
    return InvalidNode(
        f"process {pid} may not use node {format_nodes(wanted - allowed)}: {where} allows memory "
        f"only on node {format_nodes(allowed)} (cpuset.mems.effective); move it to a cgroup that "
        "allows the target, or widen that cgroup's cpuset.mems",
        errno=errno.EACCES,
    )


# Not zeroed: the C side writes every slot before it reads it, and zeroing
# 1.25 MiB touches every page of it (tens of ms under emulation).
_uncleared = ffi.new_allocator(should_clear_after_alloc=False)
_per_thread = threading.local()


class _Scratch:
    """cffi arrays for one batch, reused across chunks and calls of one thread."""

    def __init__(self, pages: int):
        self.size = pages
        self.pages = _uncleared("void *[]", pages)
        self.nodes = _uncleared("int[]", pages)
        self.status = _uncleared("int[]", pages)
        self.after = _uncleared("int[]", pages)


def _scratch(pages: int) -> _Scratch:
    """This thread's arrays, grown when a call needs more than an earlier one."""
    scratch = getattr(_per_thread, "scratch", None)
    if scratch is None or scratch.size < pages:
        scratch = _per_thread.scratch = _Scratch(pages)
    return scratch


def _check_targets(nodes: Iterable[int]) -> frozenset[int]:
    """:func:`check_nodes` at the cost of one small file: ``has_memory`` is what the kernel
    checks (N_MEMORY); the whole topology is read only to say what is wrong."""
    wanted = frozenset(nodes)
    try:
        with open(HAS_MEMORY) as f:
            memory = parse_nodes(f.read())
    except (OSError, NodeListError):
        return check_nodes(wanted)
    return wanted if wanted and wanted <= memory else check_nodes(wanted)


def _page_range(start: int, end: int) -> tuple[int, int]:
    if start < 0 or end <= start:
        raise InvalidArgument(f"empty or negative address range {start:#x}-{end:#x}")
    first = start - start % PAGE_SIZE
    return first, (end - first + PAGE_SIZE - 1) // PAGE_SIZE


def migrate_range(pid: int, start: int, end: int, nodes: Iterable[int], **options: Any) -> MigrationResult:
    """Move the pages of ``[start, end)`` of process ``pid`` onto ``nodes``."""
    return migrate_ranges(pid, [(start, end)], nodes, **options)


def _batch_policy(batch_pages: int | None, next_batch: Callable[[int, float], int] | None,
                  max_stall: float | None) -> tuple[int, Callable[[int, float], int] | None]:
    """The first batch and the policy for the next ones (see :func:`migrate_ranges`)."""
    if next_batch is not None:
        return batch_pages or DEFAULT_BATCH, next_batch
    if max_stall is None:
        return batch_pages or DEFAULT_BATCH, None
    policy = StallPolicy(max_stall, ceiling=min(MAX_BATCH, batch_pages or MAX_BATCH))
    return policy.batch, policy.next_batch


class _ChunkLoop:
    """The loop every chunked move shares (:func:`migrate_ranges`, :func:`.place.place_ranges`):
    chunks packed from the pieces, each one waiting for budget (``before_chunk``), moved by
    the caller's ``move``, settled with the budget (``after_chunk``: what it reserved and what
    it moved), counted, reported (``progress``), and the batch resized by the stall bound
    (``adapt``) before the next chunk is cut.  Stops between chunks when ``cancelled()`` says
    so; the batch carries over from one :meth:`run` to the next."""

    def __init__(self, batch: int, adapt: Callable[[int, float], int] | None, scratch: _Scratch, *,
                 total_pages: int, done_pages: int, before_chunk: Callable[[int], None] | None,
                 after_chunk: Callable[[int, int], None] | None,
                 progress: Callable[[int, int], None] | None, cancelled: Callable[[], bool] | None):
        self.batch, self.adapt, self.room = batch, adapt, scratch.size
        self.total, self.done = total_pages, done_pages
        self.before_chunk, self.after_chunk = before_chunk, after_chunk
        self.progress, self.cancelled = progress, cancelled

    def run(self, pieces: Sequence[tuple[int, int]],
            move: Callable[[int, list[tuple[int, int]], int, int], MigrationResult],
            result: MigrationResult) -> None:
        """``move(piece, runs, piece_end, pages)`` makes one chunk's call (:func:`.chunks.packed_chunks`
        names its arguments) and returns what it did."""
        for piece, runs, piece_end in packed_chunks(pieces, lambda: min(self.batch, self.room)):
            if result.cancelled or (self.cancelled is not None and self.cancelled()):
                result.cancelled = True
                return
            count = sum(npages for _addr, npages in runs)
            if self.before_chunk is not None:
                self.before_chunk(count * PAGE_SIZE)
            chunk = move(piece, runs, piece_end, count)
            if self.after_chunk is not None:
                self.after_chunk(count * PAGE_SIZE, chunk.moved * PAGE_SIZE)
            result.add(chunk)
            self.done += count
            if self.progress is not None:
                self.progress(self.done * PAGE_SIZE, self.total * PAGE_SIZE)
            if self.adapt is not None and chunk.calls:
                self.batch = max(1, min(MAX_BATCH, self.adapt(count, chunk.longest_call_seconds)))


def migrate_ranges(
    pid: int,
    ranges: Sequence[tuple[int, int]],
    nodes: Iterable[int],
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
    count_huge_pages: bool = False,
) -> MigrationResult:
    """Move the pages of address ranges of process ``pid`` onto ``nodes``.

    Works in chunks.  The batch size: ``next_batch(pages, seconds)`` when
    given (the executor's stall bound); else a :class:`StallPolicy` keeping
    each call under ``max_stall`` seconds, with ``batch_pages`` as the largest
    batch; ``max_stall=None`` keeps ``batch_pages`` fixed.  ``before_chunk(bytes)``
    waits for budget, ``after_chunk(bytes, moved_bytes)`` says what of it moved,
    ``progress(done, total)`` reports bytes, ``cancelled()`` stops between chunks.
    Pages already on a target node are counted, never moved.
    ``count_huge_pages`` also counts the transparent huge pages now in the ranges
    (``result.huge_pages``): a report for people, so off unless asked.
    """
    targets = sorted(nodes if checked else _check_targets(nodes))
    spans = [_page_range(start, end) for start, end in ranges]
    total_pages = sum(npages for _first, npages in spans)
    result = MigrationResult(pid=pid, target=frozenset(targets))
    if not total_pages:
        return result
    batch, adapt = _batch_policy(batch_pages, next_batch, max_stall)
    batch = max(1, min(MAX_BATCH, batch))
    prescan = read_prescan(pid, targets, total_pages)
    spans, result.already, result.not_present = without_settled(spans, prescan.settled)
    # A chunk never mixes kinds: it is all blind or all queried.  Each kind is packed:
    # one call covers as many small mappings as fit in a batch.
    kinds = pieces_by_kind(spans, prescan.blind)
    scratch = _scratch(min(MAX_BATCH, max(sum(npages for _first, npages in spans), 1)))
    c_targets = ffi.new("int[]", targets)
    flags = lib.MPOL_MF_MOVE_ALL if move_all else lib.MPOL_MF_MOVE
    # Only where huge pages are (looked up when a chunk first ends inside one).
    carry = _HugeTail(pid, targets, ranges)
    loop = _ChunkLoop(batch, adapt, scratch, total_pages=total_pages,
                      done_pages=result.already + result.not_present,
                      before_chunk=before_chunk, after_chunk=after_chunk, progress=progress,
                      cancelled=cancelled)

    def move(blind: bool, _piece: int, segments: list[tuple[int, int]], tail_end: int, count: int,
             ) -> MigrationResult:
        last, last_pages = segments[-1]
        chunk_end = last + last_pages * PAGE_SIZE
        if not blind:
            carry.look_before(chunk_end, min(tail_end, huge_ceiling(chunk_end)))
        chunk = _migrate_chunk(pid, segments, c_targets, targets, flags, scratch, blind=blind)
        if not blind:
            carry.settle(chunk, chunk_end)
            carry.look_after(chunk)
            result.pages_queried += count
        return chunk

    t0 = time.monotonic()
    for blind, pieces in kinds:
        loop.run(pieces, partial(move, blind), result)
        carry.flush(result)
    result.pages_requested = total_pages
    result.seconds = time.monotonic() - t0
    if count_huge_pages:  # a report, not part of the move: one smaps read, 9-17 ms in a TCG guest
        result.huge_pages = huge_pages_in(pid, ranges)
    return result


class _HugeTail:
    """Pages past a chunk's end, up to the next huge page boundary, that the chunk moved.

    Moving one base page of a THP moves the whole huge page, so when a chunk
    ends inside one, the pages after the chunk arrive on the target with it;
    the next chunk's pre-query would count them "already there".  Query that
    tail before and after the chunk: pages off target before and on target
    after were moved by this chunk, and later chunks count them as moved.
    """

    def __init__(self, pid: int, targets: Sequence[int], ranges: Sequence[tuple[int, int]]):
        self.pid = pid
        self.ranges = ranges
        self.huge: bool | None = None     # any THP in the ranges? read at the first tail
        self.targets = frozenset(targets)
        self.tail: list[int] = []        # addresses off target before the chunk
        self.moved_along: list[int] = []  # addresses later chunks will find on target

    def _query(self, addresses: Sequence[int]) -> list[int]:
        try:
            return query_pages(self.pid, addresses)
        except NumaError:
            return [-errno.ENOENT] * len(addresses)  # a vanished tail is nothing to carry

    def look_before(self, end: int, tail_end: int) -> None:
        self.tail = []
        if tail_end <= end:
            return
        if self.huge is None:
            self.huge = huge_pages_in(self.pid, self.ranges) > 0
        if not self.huge:
            return
        addresses = list(range(end, tail_end, PAGE_SIZE))
        self.tail = [a for a, s in zip(addresses, self._query(addresses)) if s >= 0 and s not in self.targets]

    def look_after(self, chunk: MigrationResult) -> None:
        if not self.tail or not chunk.moved:
            return
        self.moved_along += [a for a, s in zip(self.tail, self._query(self.tail)) if s in self.targets]

    def settle(self, chunk: MigrationResult, end: int) -> None:
        """Recount pages of this chunk an earlier chunk moved: "already" -> "moved"."""
        inside = [a for a in self.moved_along if a < end]
        self.moved_along = [a for a in self.moved_along if a >= end]
        n = min(len(inside), chunk.already)
        chunk.already -= n
        chunk.moved += n

    def flush(self, result: MigrationResult) -> None:
        """Pages moved along but never reached (a cancelled migration): still moved."""
        result.moved += len(self.moved_along)
        self.moved_along = []


def _migrate_chunk(pid: int, runs: Sequence[tuple[int, int]], c_targets: Any, targets: Sequence[int],
                   flags: int, scratch: _Scratch, *, blind: bool) -> MigrationResult:
    """One chunk over ``runs`` (address, pages) in one ``lib.nd_migrate_segments`` call:
    query, move, re-query; ``blind`` (no page of the runs on a target) skips the query."""
    res = ffi.new("struct nd_chunk_result *")
    starts = ffi.new("uintptr_t[]", [addr for addr, _pages in runs])
    counts = ffi.new("unsigned long[]", [npages for _addr, npages in runs])
    rc = lib.nd_migrate_segments(pid, starts, counts, len(runs), PAGE_SIZE, c_targets, len(targets), flags,
                                 int(blind), scratch.pages, scratch.nodes, scratch.status, scratch.after, res)
    return chunk_result(rc, res, pid, flags, targets)


def chunk_result(rc: int, res: Any, pid: int, flags: int, targets: Sequence[int]) -> MigrationResult:
    """What one chunk call (``struct nd_chunk_result``) did; raises the call's own error."""
    if rc < 0:
        op = "move_pages_all" if flags & lib.MPOL_MF_MOVE_ALL else "move_pages"
        raise_syscall_error(res.call_errno, op=op, pid=pid, targets=targets)
    failed: Counter[str] = Counter()
    if res.failed:
        for err in range(1, lib.ND_MAX_ERRNO):
            if res.err_counts[err]:
                failed[page_outcome_name(err)] += res.err_counts[err]
    if res.other_node:
        failed["not_moved"] += res.other_node
    return MigrationResult(
        pid=pid, target=frozenset(), moved=res.moved, already=res.already,
        not_present=res.not_present, failed=failed, calls=res.move_calls,
        seconds=res.total_ns / 1e9, longest_call_seconds=res.longest_ns / 1e9,
    )


def range_residency(pid: int, start: int, end: int, *, batch_pages: int = MAX_BATCH) -> dict[str, dict]:
    """Where the pages of ``[start, end)`` are: ``{"nodes": {node: bytes}, "other": {reason: bytes}}``."""
    first, npages = _page_range(start, end)
    size = min(batch_pages, npages)
    pages = ffi.new("void *[]", size)
    status = ffi.new("int[]", size)
    node_pages = ffi.new("long[]", MASK_BITS)
    err_counts = ffi.new("long[]", lib.ND_MAX_ERRNO)
    call_errno = ffi.new("int *")
    done = 0
    while done < npages:
        count = min(size, npages - done)
        if lib.nd_query_range(pid, first + done * PAGE_SIZE, count, PAGE_SIZE, pages, status,
                              node_pages, MASK_BITS, err_counts, lib.ND_MAX_ERRNO, call_errno) < 0:
            raise_syscall_error(call_errno[0], op="move_pages", pid=pid)
        done += count
    per_node = {n: node_pages[n] * PAGE_SIZE for n in range(MASK_BITS) if node_pages[n]}
    other: dict[str, int] = {}
    for e in range(1, lib.ND_MAX_ERRNO):
        if err_counts[e]:
            # A query's EFAULT is a never-touched area (no page table), as ENOENT is.
            name = "not_present" if e in (errno.ENOENT, errno.EFAULT) else page_outcome_name(e)
            other[name] = other.get(name, 0) + err_counts[e] * PAGE_SIZE
    return {"nodes": per_node, "other": other}


def query_pages(pid: int, addresses: Sequence[int]) -> list[int]:
    """Node of each page (or ``-errno``): for small address lists and tests."""
    n = len(addresses)
    pages = ffi.new("void *[]", [ffi.cast("void *", a) for a in addresses])
    status = ffi.new("int[]", n)
    if lib.nd_move_pages(pid, n, pages, ffi.NULL, status, 0) < 0:
        raise_syscall_error(ffi.errno, op="move_pages", pid=pid)
    return list(status)


def move_pages(pid: int, addresses: Sequence[int], nodes: Sequence[int], *,
               move_all: bool = False) -> list[int]:
    """Raw ``move_pages``: move each address to its node; returns each page's status."""
    if len(addresses) != len(nodes):
        raise InvalidArgument("move_pages needs one node per address")
    check_nodes(set(nodes))
    n = len(addresses)
    pages = ffi.new("void *[]", [ffi.cast("void *", a) for a in addresses])
    c_nodes = ffi.new("int[]", list(nodes))
    status = ffi.new("int[]", n)
    flags = lib.MPOL_MF_MOVE_ALL if move_all else lib.MPOL_MF_MOVE
    if lib.nd_move_pages(pid, n, pages, c_nodes, status, flags) < 0:
        raise_syscall_error(ffi.errno, op="move_pages_all" if move_all else "move_pages", pid=pid,
                            targets=nodes)
    return list(status)


def migrate_process(pid: int, source: Iterable[int], target: Iterable[int]) -> ProcessMigration:
    """``migrate_pages``: move all of ``pid``'s pages on ``source`` nodes to ``target`` nodes.

    One syscall for the whole process: the kernel offers no way to bound its
    stall.  Callers that must bound it use :func:`migrate_ranges` instead.
    """
    target = check_nodes(target)
    source = frozenset(source)
    if not source:
        raise InvalidNode("empty source node set")
    old, maxnode = nodemask(source)
    new, _ = nodemask(target)
    t0 = time.monotonic()
    rc = lib.nd_migrate_pages(pid, maxnode, old, new)
    seconds = time.monotonic() - t0
    if rc < 0:
        raise_syscall_error(ffi.errno, op="migrate_pages", pid=pid, targets=target)
    return ProcessMigration(pid, source, target, int(rc), seconds)
