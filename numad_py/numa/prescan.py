"""What the kernel already tells about a process's mappings, read once per migration call.

``/proc/PID/numa_maps`` counts each mapping's pages per node.  A mapping
with no page on any target node needs no query before its move: every page
the move leaves on a target was moved by it, so the move's own status array
tells *moved* from *failed*, and "already there" is zero.  Mappings with a
page on a target (or that cannot be told) keep the query before each chunk.

A mapping with every present page already on a target needs no walk at all:
its pages are counted "already there" (and its holes "not present") from the
same counts.  A process in place but for a few shared library pages used to
be queried page by page, all of it, to move nothing.

The counts are read before the first chunk; a page the process itself faults
onto a target node while the migration runs counts as moved, as a page
another migrator moves between a chunk's query and its move always did, and
a page faulted off target into a settled mapping meanwhile stays where it is.

Reading numa_maps walks the whole process, so it is done only when the
ranges are a good part of it (``worth_reading``); a small range of a large
process is cheaper to query.  Parsing uses one regex pass per file: these
files have thousands of lines for a large process.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from .. import procfs
from ..errors import NumaError
from .masks import HUGE_PAGE_SIZE, PAGE_SIZE

_MAPS_LINE = re.compile(rb"^([0-9a-f]+)-([0-9a-f]+) ", re.M)
_NUMA_MAPS_FIELDS = re.compile(rb"^([0-9a-f]+) |\bN([0-9]+)=([0-9]+)|\b(kernelpagesize_kB)=([0-9]+)", re.M)
_SMAPS_FIELDS = re.compile(rb"^([0-9a-f]+)-([0-9a-f]+) |^AnonHugePages:\s+([0-9]+) kB", re.M)

_UNKNOWN = -1  # a "node" key for counts that cannot be read as base pages per node
# A mapping with fewer pages present than this share goes the query way: an
# absent page handed to move_pages makes the kernel flush its batch early.
DENSE_SHARE = 7 / 8
# Read numa_maps only when the ranges are at least this share of the resident set.
WORTH_SHARE = 1 / 8
MIN_PAGES = 1024  # below this the query costs less than reading two files


def parse_bounds(maps: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of each mapping in /proc/PID/maps text."""
    return [(int(lo, 16), int(hi, 16)) for lo, hi in _MAPS_LINE.findall(maps)]


def parse_node_pages(numa_maps: bytes) -> dict[int, dict[int, int]]:
    """Base pages per node of each mapping (by start) in /proc/PID/numa_maps text.

    Mappings of huge TLB pages (``kernelpagesize_kB`` above the base page)
    are left out: their counts are in huge pages and they go the query way.
    """
    out: dict[int, dict[int, int]] = {}
    current: dict[int, int] | None = None
    for start, node, pages, pagesize, kb in _NUMA_MAPS_FIELDS.findall(numa_maps):
        if start:
            current = out.setdefault(int(start, 16), {})
        elif current is None:
            continue
        elif node:
            current[int(node)] = current.get(int(node), 0) + int(pages)
        elif pagesize and int(kb) * 1024 != PAGE_SIZE:
            current.clear()
            current[_UNKNOWN] = 1
    return out


def parse_huge_spans(smaps: bytes) -> list[tuple[int, int, int]]:
    """``(start, end, AnonHugePages bytes)`` of each mapping in /proc/PID/smaps text."""
    out: list[tuple[int, int, int]] = []
    for lo, hi, kb in _SMAPS_FIELDS.findall(smaps):
        if lo:
            out.append((int(lo, 16), int(hi, 16), 0))
        elif out:
            out[-1] = (out[-1][0], out[-1][1], int(kb) * 1024)
    return out


def _counted_mappings(bounds: Iterable[tuple[int, int]], node_pages: dict[int, dict[int, int]],
                      ) -> Iterator[tuple[int, int, dict[int, int]]]:
    """``(start, end, pages per node)`` of each mapping numa_maps lists, sorted by start."""
    for start, end in sorted(bounds):
        per_node = node_pages.get(start)
        if per_node is not None and end > start:
            yield start, end, per_node


def blind_intervals(bounds: Iterable[tuple[int, int]], node_pages: dict[int, dict[int, int]],
                    targets: Iterable[int]) -> list[tuple[int, int]]:
    """Mappings that may be moved without a query: none of their pages on a target,
    at least ``DENSE_SHARE`` of them present.  Sorted, adjacent ones merged."""
    wanted = frozenset(targets)
    out: list[tuple[int, int]] = []
    for start, end, per_node in _counted_mappings(bounds, node_pages):
        if any(n in wanted or n == _UNKNOWN for n in per_node):
            continue
        if sum(per_node.values()) < DENSE_SHARE * ((end - start) // PAGE_SIZE):
            continue
        if out and out[-1][1] == start:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def settled_mappings(bounds: Iterable[tuple[int, int]], node_pages: dict[int, dict[int, int]],
                     targets: Iterable[int]) -> list[tuple[int, int, int]]:
    """Mappings with at least one page present and every present page on a target:
    ``(start, end, pages present)``, sorted.  A mapping with no page present keeps
    the query: the kernel may call it unmovable (EFAULT) rather than absent."""
    wanted = frozenset(targets)
    out: list[tuple[int, int, int]] = []
    for start, end, per_node in _counted_mappings(bounds, node_pages):
        if not per_node or any(n not in wanted for n in per_node):  # _UNKNOWN is no target
            continue
        out.append((start, end, sum(per_node.values())))
    return out


class BlindRanges:
    """Where in a migration the move may skip its query (see the module docstring)."""

    def __init__(self, intervals: Sequence[tuple[int, int]] = ()):
        self.intervals = list(intervals)
        self._starts = [lo for lo, _hi in self.intervals]

    def __bool__(self) -> bool:
        return bool(self.intervals)

    def at(self, addr: int, end: int) -> tuple[bool, int]:
        """Whether ``addr`` is in a blind interval, and where that answer stops (<= ``end``)."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.intervals[i][1]:
            return True, min(end, self.intervals[i][1])
        following = self._starts[i + 1] if i + 1 < len(self._starts) else end
        return False, min(end, following)


def worth_reading(pid: int, pages: int) -> bool:
    """Whether ``pages`` of the ranges make reading the whole process's numa_maps pay."""
    if pages < MIN_PAGES:
        return False
    try:
        resident = int(procfs.read_bytes(pid, "statm").split()[1])
    except (NumaError, ValueError, IndexError):
        return False
    return pages >= WORTH_SHARE * resident


class Prescan(NamedTuple):
    blind: BlindRanges                          # move without a query
    settled: list[tuple[int, int, int]]         # no walk: (start, end, pages present)


def read_prescan(pid: int, targets: Iterable[int], pages: int) -> Prescan:
    """What ``pid``'s numa_maps says now; nothing when not worth it or unreadable (the
    chunks then query as before, and the first one says why the process is gone)."""
    if not worth_reading(pid, pages):
        return Prescan(BlindRanges(), [])
    try:
        bounds = parse_bounds(procfs.read_bytes(pid, "maps"))
        node_pages = parse_node_pages(procfs.read_bytes(pid, "numa_maps"))
    except NumaError:
        return Prescan(BlindRanges(), [])
    return Prescan(BlindRanges(blind_intervals(bounds, node_pages, targets)),
                   settled_mappings(bounds, node_pages, targets))


def huge_pages_in(pid: int, ranges: Sequence[tuple[int, int]]) -> int:
    """Transparent huge pages (2 MiB) in the mappings the ranges touch, clipped to the ranges."""
    try:
        spans = parse_huge_spans(procfs.read_bytes(pid, "smaps"))
    except NumaError:
        return 0  # the process may have exited right after its pages moved
    total = 0
    for lo, hi, huge in spans:
        if huge:
            overlap = sum(max(0, min(end, hi) - max(start, lo)) for start, end in ranges)
            total += min(huge, overlap)
    return total // HUGE_PAGE_SIZE
