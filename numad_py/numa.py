"""Typed Python API over the cffi binding ``numad_py._numa``.

Every syscall result passes through :func:`numad_py.errors.raise_for_errno`;
``ffi.errno`` is read once, right after the call.  cffi releases the GIL
around each C call, so a long ``move_pages`` does not block other threads.
Large batches live in cffi arrays and are tallied in C: no per-page Python
objects on the hot path.
"""

from __future__ import annotations

import enum
import errno
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable, Sequence

from ._numa import ffi, lib
from .errors import (
    InvalidArgument,
    InvalidNode,
    NumaError,
    Unsupported,
    page_outcome_name,
    raise_for_errno,
)
from .nodes import format_nodes
from .sense.maps import read_huge_bytes, read_maps
from .topology import online_nodes, read_topology

PAGE_SIZE = lib.sysconf(lib._SC_PAGESIZE)
HUGE_PAGE_SIZE = 2 << 20  # x86_64 PMD-sized transparent huge page
MAX_BATCH = 65536          # pages per move_pages call, the upper clamp
DEFAULT_BATCH = 4096       # 16 MiB of 4 KiB pages: well under 20 ms on real hardware
TRANSIENT_OUTCOMES = ("busy", "not_moved", "no_memory")  # may work on the next attempt
_MASK_BITS = 1024          # nodemask width: MAX_NUMNODES of distro kernels
_LONG_BITS = ffi.sizeof("unsigned long") * 8


class Mode(enum.IntEnum):
    DEFAULT = lib.MPOL_DEFAULT
    PREFERRED = lib.MPOL_PREFERRED
    BIND = lib.MPOL_BIND
    INTERLEAVE = lib.MPOL_INTERLEAVE
    LOCAL = lib.MPOL_LOCAL
    PREFERRED_MANY = lib.MPOL_PREFERRED_MANY
    WEIGHTED_INTERLEAVE = lib.MPOL_WEIGHTED_INTERLEAVE

    @classmethod
    def parse(cls, text: str) -> Mode:
        try:
            return cls[text.replace("-", "_").upper()]
        except KeyError:
            names = ", ".join(m.name.lower().replace("_", "-") for m in cls)
            raise InvalidArgument(f"unknown memory policy {text!r} (one of: {names})") from None


# Modes added after the oldest kernels we run on; probed before use.
_OPTIONAL_MODES = {Mode.PREFERRED_MANY: "5.15", Mode.WEIGHTED_INTERLEAVE: "6.9"}
_NODELESS_MODES = (Mode.DEFAULT, Mode.LOCAL)


@dataclass(frozen=True)
class MemPolicy:
    mode: Mode
    nodes: frozenset[int]


# --- node masks ------------------------------------------------------------

def _nodemask(nodes: Iterable[int]):
    mask = ffi.new("unsigned long[]", _MASK_BITS // _LONG_BITS)
    for node in nodes:
        if not 0 <= node < _MASK_BITS:
            raise InvalidNode(f"node {node} is outside the kernel's node range 0-{_MASK_BITS - 1}")
        mask[node // _LONG_BITS] |= 1 << (node % _LONG_BITS)
    # maxnode is a bit count; the kernel ignores the last bit (historic
    # off-by-one), so pass one more than the width.
    return mask, _MASK_BITS + 1


def _mask_nodes(mask) -> frozenset[int]:
    return frozenset(
        word * _LONG_BITS + bit
        for word in range(_MASK_BITS // _LONG_BITS)
        if mask[word]
        for bit in range(_LONG_BITS)
        if mask[word] >> bit & 1
    )


def check_nodes(nodes: Iterable[int], *, sys_root: str = "/sys") -> frozenset[int]:
    """Refuse nodes that are not online or have no memory, before the kernel does."""
    wanted = frozenset(nodes)
    if not wanted:
        raise InvalidNode("empty node set")
    topo = read_topology(sys_root)
    missing = wanted - topo.node_ids
    if missing:
        raise InvalidNode(
            f"node {format_nodes(missing)} does not exist (online nodes: {format_nodes(topo.node_ids)})"
        )
    memless = wanted - topo.memory_nodes
    if memless:
        raise InvalidNode(f"node {format_nodes(memless)} has no memory")
    return wanted


# --- memory policy of the calling thread -----------------------------------

def get_mempolicy(addr: int | None = None) -> MemPolicy:
    """The calling thread's policy, or the policy governing ``addr`` in this process."""
    mode = ffi.new("int *")
    mask, maxnode = _nodemask(())
    flags = lib.MPOL_F_ADDR if addr is not None else 0
    rc = lib.nd_get_mempolicy(mode, mask, maxnode, ffi.cast("void *", addr or 0), flags)
    if rc < 0:
        raise_for_errno(ffi.errno, op="get_mempolicy")
    return MemPolicy(Mode(mode[0] & 0xFF), _mask_nodes(mask))


def allowed_nodes() -> frozenset[int]:
    """Nodes this thread may allocate on (its cpuset's mems)."""
    mode = ffi.new("int *")
    mask, maxnode = _nodemask(())
    if lib.nd_get_mempolicy(mode, mask, maxnode, ffi.NULL, lib.MPOL_F_MEMS_ALLOWED) < 0:
        raise_for_errno(ffi.errno, op="get_mempolicy")
    return _mask_nodes(mask)


def set_mempolicy(mode: Mode, nodes: Iterable[int] = ()) -> None:
    """Set the calling thread's policy; children forked later inherit it."""
    mode = Mode(mode)
    _require(mode)
    nodes = frozenset(nodes)
    if mode in _NODELESS_MODES and nodes:
        raise InvalidArgument(f"{mode.name.lower()} policy takes no nodes")
    if mode not in _NODELESS_MODES and not nodes:
        raise InvalidArgument(f"{mode.name.lower()} policy needs at least one node")
    if mode == Mode.PREFERRED and len(nodes) != 1:
        raise InvalidArgument("preferred takes exactly one node (use preferred-many for several)")
    mask, maxnode = _nodemask(nodes)
    if lib.nd_set_mempolicy(mode, mask if nodes else ffi.NULL, maxnode if nodes else 0) < 0:
        _raise_policy_errno(ffi.errno, "set_mempolicy", mode, nodes)


def mbind(addr: int, length: int, mode: Mode, nodes: Iterable[int] = (), *,
          move: bool = False, strict: bool = False) -> None:
    """Set the policy of an address range of this process; ``move`` migrates existing pages."""
    mode = Mode(mode)
    _require(mode)
    nodes = frozenset(nodes)
    mask, maxnode = _nodemask(nodes)
    flags = (lib.MPOL_MF_MOVE if move else 0) | (lib.MPOL_MF_STRICT if strict else 0)
    if lib.nd_mbind(ffi.cast("void *", addr), length, mode, mask if nodes else ffi.NULL,
                    maxnode if nodes else 0, flags) < 0:
        _raise_policy_errno(ffi.errno, "mbind", mode, nodes)


def set_home_node(addr: int, length: int, node: int) -> None:
    """``set_mempolicy_home_node`` (Linux 5.17+) on a range that has bind/preferred-many policy."""
    if lib.nd_set_mempolicy_home_node(addr, length, node, 0) < 0:
        raise_for_errno(ffi.errno, op="set_mempolicy_home_node")


def _raise_policy_errno(err: int, op: str, mode: Mode, nodes: frozenset[int]) -> None:
    if err == errno.EINVAL and mode in _OPTIONAL_MODES and not supports(mode):
        raise Unsupported(_unsupported_text(mode))
    if err == errno.EINVAL and nodes - online_nodes():
        check_nodes(nodes)  # raises InvalidNode with the names
    raise_for_errno(err, op=op, detail=f"mode {mode.name.lower()}, nodes {sorted(nodes)}")


_support_cache: dict[Mode, bool] = {}


def supports(mode: Mode) -> bool:
    """Whether the running kernel accepts ``mode``.

    Probed in a throw-away thread: a thread's policy is its own, so the
    probe cannot disturb the caller's.
    """
    mode = Mode(mode)
    if mode not in _OPTIONAL_MODES:
        return True
    if mode not in _support_cache:
        result = []

        def probe():
            node = min(allowed_nodes())
            mask, maxnode = _nodemask((node,))
            result.append(lib.nd_set_mempolicy(mode, mask, maxnode) == 0)

        t = threading.Thread(target=probe, name="numad-probe")
        t.start()
        t.join()
        _support_cache[mode] = bool(result and result[0])
    return _support_cache[mode]


def _require(mode: Mode) -> None:
    if mode in _OPTIONAL_MODES and not supports(mode):
        raise Unsupported(_unsupported_text(mode))


def _unsupported_text(mode: Mode) -> str:
    name = mode.name.lower().replace("_", "-")
    return f"memory policy {name} is unsupported on this kernel (needs Linux {_OPTIONAL_MODES[mode]}+)"


def supports_home_node() -> bool:
    """set_mempolicy_home_node exists iff a zero-length call does not fail with ENOSYS."""
    if lib.nd_set_mempolicy_home_node(0, 0, 0, 0) == 0:
        return True
    return ffi.errno != errno.ENOSYS


# --- pages of any process ---------------------------------------------------

@dataclass
class MigrationResult:
    """What one migration did; counts are in base pages of ``page_size`` bytes."""

    pid: int
    target: frozenset[int]
    pages_requested: int = 0
    moved: int = 0
    already: int = 0
    not_present: int = 0
    failed: Counter = field(default_factory=Counter)  # reason -> pages
    seconds: float = 0.0
    longest_call_seconds: float = 0.0
    calls: int = 0
    page_size: int = PAGE_SIZE
    huge_pages: int = 0           # transparent huge pages now in the range (2 MiB each)
    cancelled: bool = False

    @property
    def bytes_moved(self) -> int:
        return self.moved * self.page_size

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    @property
    def refused_bytes(self) -> int:
        """Bytes the kernel will keep refusing (shared, unmovable...), not transient failures."""
        return sum(n for reason, n in self.failed.items() if reason not in TRANSIENT_OUTCOMES) * self.page_size

    @property
    def on_target(self) -> int:
        return self.moved + self.already

    def add(self, other: MigrationResult) -> None:
        self.pages_requested += other.pages_requested
        self.moved += other.moved
        self.already += other.already
        self.not_present += other.not_present
        self.failed.update(other.failed)
        self.seconds += other.seconds
        self.longest_call_seconds = max(self.longest_call_seconds, other.longest_call_seconds)
        self.calls += other.calls
        self.huge_pages += other.huge_pages
        self.cancelled = self.cancelled or other.cancelled

    def to_dict(self) -> dict:
        return {
            "pid": self.pid,
            "target": format_nodes(self.target),
            "pages_requested": self.pages_requested,
            "pages_moved": self.moved,
            "pages_already_on_target": self.already,
            "pages_not_present": self.not_present,
            "pages_failed": dict(sorted(self.failed.items())),
            "bytes_moved": self.bytes_moved,
            "seconds": round(self.seconds, 6),
            "longest_call_seconds": round(self.longest_call_seconds, 6),
            "calls": self.calls,
            "huge_pages": self.huge_pages,
            "cancelled": self.cancelled,
        }


class _Scratch:
    """cffi arrays for one batch, reused across chunks of a migration."""

    def __init__(self, pages: int):
        self.size = pages
        self.pages = ffi.new("void *[]", pages)
        self.nodes = ffi.new("int[]", pages)
        self.status = ffi.new("int[]", pages)
        self.after = ffi.new("int[]", pages)


def _page_range(start: int, end: int) -> tuple[int, int]:
    if start < 0 or end <= start:
        raise InvalidArgument(f"empty or negative address range {start:#x}-{end:#x}")
    first = start - start % PAGE_SIZE
    return first, (end - first + PAGE_SIZE - 1) // PAGE_SIZE


def migrate_range(pid: int, start: int, end: int, nodes: Iterable[int], **options) -> MigrationResult:
    """Move the pages of ``[start, end)`` of process ``pid`` onto ``nodes``."""
    return migrate_ranges(pid, [(start, end)], nodes, **options)


def migrate_ranges(
    pid: int,
    ranges: Sequence[tuple[int, int]],
    nodes: Iterable[int],
    *,
    move_all: bool = False,
    batch_pages: int = DEFAULT_BATCH,
    next_batch: Callable[[int, float], int] | None = None,
    before_chunk: Callable[[int], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    checked: bool = False,
) -> MigrationResult:
    """Move the pages of address ranges of process ``pid`` onto ``nodes``.

    Works in chunks of ``batch_pages``.  Hooks let the executor own policy
    without this function knowing it: ``next_batch(pages, seconds)`` adapts
    the batch to the stall bound, ``before_chunk(bytes)`` waits for budget,
    ``progress(done, total)`` reports bytes, ``cancelled()`` stops between
    chunks.  Pages already on a target node are counted, never moved.
    """
    targets = sorted(nodes if checked else check_nodes(nodes))
    spans = [_page_range(start, end) for start, end in ranges]
    total_pages = sum(npages for _first, npages in spans)
    result = MigrationResult(pid=pid, target=frozenset(targets))
    if not total_pages:
        return result
    # Sized once for the largest batch the stall controller may ask for.
    scratch = _Scratch(min(MAX_BATCH, max(npages for _first, npages in spans)))
    c_targets = ffi.new("int[]", targets)
    flags = lib.MPOL_MF_MOVE_ALL if move_all else lib.MPOL_MF_MOVE
    batch = max(1, min(MAX_BATCH, batch_pages))
    done_pages = 0
    t0 = time.monotonic()
    for first, npages in spans:
        offset = 0
        while offset < npages and not result.cancelled:
            if cancelled is not None and cancelled():
                result.cancelled = True
                break
            count = _huge_aligned(first + offset * PAGE_SIZE, min(batch, npages - offset, scratch.size),
                                  npages - offset)
            if before_chunk is not None:
                before_chunk(count * PAGE_SIZE)
            chunk = _migrate_chunk(pid, first + offset * PAGE_SIZE, count, c_targets, len(targets),
                                   flags, scratch)
            result.add(chunk)
            offset += count
            done_pages += count
            if progress is not None:
                progress(done_pages * PAGE_SIZE, total_pages * PAGE_SIZE)
            if next_batch is not None and chunk.calls:
                batch = max(1, min(MAX_BATCH, next_batch(count, chunk.longest_call_seconds)))
    result.pages_requested = total_pages
    result.seconds = time.monotonic() - t0
    result.huge_pages = _huge_pages_in(pid, ranges)
    return result


def _huge_aligned(addr: int, count: int, remaining: int) -> int:
    """End a chunk on a huge page boundary when it can, so no THP is split across two
    chunks (the kernel moves a THP whole; a split would count its tail as "already there")."""
    if count >= remaining:
        return count
    end = addr + count * PAGE_SIZE
    aligned = end - end % HUGE_PAGE_SIZE
    return (aligned - addr) // PAGE_SIZE if aligned > addr else count


def _huge_pages_in(pid: int, ranges: Sequence[tuple[int, int]]) -> int:
    """Transparent huge pages (2 MiB) in the mappings the ranges touch, clipped to the ranges."""
    try:
        huge = read_huge_bytes(pid)
        maps = read_maps(pid)
    except NumaError:
        return 0  # the process may have exited right after its pages moved
    total = 0
    for m in maps:
        in_vma = huge.get(m.start, 0)
        if not in_vma:
            continue
        overlap = sum(max(0, min(end, m.end) - max(start, m.start)) for start, end in ranges)
        total += min(in_vma, overlap)
    return total // HUGE_PAGE_SIZE


def _migrate_chunk(pid, start, count, c_targets, ntargets, flags, scratch) -> MigrationResult:
    res = ffi.new("struct nd_chunk_result *")
    rc = lib.nd_migrate_chunk(pid, start, count, PAGE_SIZE, c_targets, ntargets, flags,
                              scratch.pages, scratch.nodes, scratch.status, scratch.after, res)
    if rc < 0:
        op = "move_pages_all" if flags & lib.MPOL_MF_MOVE_ALL else "move_pages"
        raise_for_errno(res.call_errno, op=op, pid=pid)
    failed = Counter()
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


def range_residency(pid: int, start: int, end: int, *, batch_pages: int = MAX_BATCH) -> dict:
    """Where the pages of ``[start, end)`` are: ``{"nodes": {node: bytes}, "not_present": bytes, ...}``."""
    first, npages = _page_range(start, end)
    size = min(batch_pages, npages)
    pages = ffi.new("void *[]", size)
    status = ffi.new("int[]", size)
    node_pages = ffi.new("long[]", _MASK_BITS)
    err_counts = ffi.new("long[]", lib.ND_MAX_ERRNO)
    call_errno = ffi.new("int *")
    done = 0
    while done < npages:
        count = min(size, npages - done)
        if lib.nd_query_range(pid, first + done * PAGE_SIZE, count, PAGE_SIZE, pages, status,
                              node_pages, _MASK_BITS, err_counts, lib.ND_MAX_ERRNO, call_errno) < 0:
            raise_for_errno(call_errno[0], op="move_pages", pid=pid)
        done += count
    per_node = {n: node_pages[n] * PAGE_SIZE for n in range(_MASK_BITS) if node_pages[n]}
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
        raise_for_errno(ffi.errno, op="move_pages", pid=pid)
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
        raise_for_errno(ffi.errno, op="move_pages_all" if move_all else "move_pages", pid=pid)
    return list(status)


@dataclass
class ProcessMigration:
    pid: int
    source: frozenset[int]
    target: frozenset[int]
    pages_not_moved: int
    seconds: float

    def to_dict(self) -> dict:
        return {"pid": self.pid, "from": format_nodes(self.source), "to": format_nodes(self.target),
                "pages_not_moved": self.pages_not_moved, "seconds": round(self.seconds, 6)}


def migrate_process(pid: int, source: Iterable[int], target: Iterable[int]) -> ProcessMigration:
    """``migrate_pages``: move all of ``pid``'s pages on ``source`` nodes to ``target`` nodes."""
    target = check_nodes(target)
    source = frozenset(source)
    if not source:
        raise InvalidNode("empty source node set")
    old, maxnode = _nodemask(source)
    new, _ = _nodemask(target)
    t0 = time.monotonic()
    rc = lib.nd_migrate_pages(pid, maxnode, old, new)
    seconds = time.monotonic() - t0
    if rc < 0:
        raise_for_errno(ffi.errno, op="migrate_pages", pid=pid)
    return ProcessMigration(pid, source, target, int(rc), seconds)


def numa_available() -> bool:
    return lib.numa_available() >= 0


__all__ = [
    "Mode", "MemPolicy", "MigrationResult", "ProcessMigration", "NumaError", "PAGE_SIZE",
    "get_mempolicy", "set_mempolicy", "mbind", "set_home_node", "supports", "supports_home_node",
    "allowed_nodes", "check_nodes", "migrate_range", "migrate_ranges", "range_residency", "query_pages",
    "move_pages", "migrate_process", "numa_available",
]
