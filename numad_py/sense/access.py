"""The access sensor: a snapshot plus what DAMON measured for the processes tier rules match.

Wraps the process sensor: after its scan, the candidates whose rule has
``tier`` become the kdamond's targets (sense/damon.py), and each one's
regions are read back, clipped to the mappings its rule moves (``memory``;
special mappings never), and given an estimate of where their pages are:
up to ``SAMPLES_PER_REGION`` pages per region, spread evenly, are located
with one ``move_pages`` query per process — the cost stays bounded however
large the process is.  The result goes into ``Snapshot.access`` for the
pure planner (decide/tiering.py).

Without DAMON (6.1) or with DAMON taken by another tool, the snapshot says
why (``access_missing``): tier rules are inactive, the others run.  Any other
DAMON failure is logged once per distinct message and the tick goes on
without measurements.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from collections.abc import Callable

from ..config.models import Config
from ..decide.match import first_match
from ..decide.snapshot import ProcessAccess, ProcessInfo, RegionAccess, Snapshot
from ..decide.tiering import EDGE_STREAK
from ..errors import NumaError
from ..numa import PAGE_SIZE
from ..numa.migrate import query_pages
from .damon import Attrs, DamonError, Kdamond, RawRegion, missing_reason
from .maps import resolve_memory

log = logging.getLogger("numad_py.sense")

SAMPLES_PER_REGION = 16
IDLE_CHUNK = 2 << 20     # granularity of the sensor's own "last seen accessed" memory
MAX_STREAK = EDGE_STREAK  # hot measurements in a row are counted up to the most tiering asks for
# What a chunk may lack of accessed coverage and still count as covered whole.  At the end of
# a hot run a cold DAMON region held a few pages of the run (4-36 KiB in the tiered guest) for
# up to 48 measurements in a row, holding the end chunk's promotion for over 90 s; the cold
# chunk next to the run lacked 388 KiB or more whenever a hot region strayed into it.
SLIVER = IDLE_CHUNK // 16


class AccessSensor:
    """``snapshot(config)`` like the process sensor's, with ``access`` filled for tier rules."""

    def __init__(self, base: Callable[[Config], Snapshot], kdamond: Kdamond, *,
                 locate: Callable[[int, list[int]], list[int]] = query_pages):
        self._base = base
        self.kdamond = kdamond
        self._locate = locate
        self._last_error = ""
        self.last: Snapshot | None = None          # the latest, for plan previews
        # per process: (first measured, its chunks' access memory)
        self._seen: dict[tuple[int, float], tuple[float, Seen]] = {}

    def snapshot(self, config: Config) -> Snapshot:
        snap = self._base(config)
        if not any(rule.tier is not None for rule in config.rules):
            self._quietly(self.kdamond.release)
            return snap
        tiered = [(p, rule) for p in snap.processes
                  if (rule := first_match(config.rules, p, config.daemon)) is not None and rule.tier is not None]
        missing = missing_reason(self.kdamond.admin)
        if missing:
            self.last = replace(snap, access_missing=missing)
            return self.last
        try:
            self.kdamond.monitor([p.pid for p, _rule in tiered], Attrs.from_settings(config.daemon.damon))
            raw = self.kdamond.regions()
        except DamonError as exc:
            self._note(str(exc))
            busy = "in use by another tool" in str(exc)
            self.last = replace(snap, access_missing=str(exc) if busy else None)
            return self.last
        attrs = self.kdamond.attrs or Attrs()
        access = {}
        self._seen = {p.identity: self._seen[p.identity] for p, _r in tiered if p.identity in self._seen}
        for proc, rule in tiered:
            regions = raw.get(proc.pid)
            if not regions:
                continue   # just added: DAMON has not aggregated it yet
            since, seen = self._seen.setdefault(proc.identity, (snap.time, Seen()))
            seen.note(regions, snap.time)
            try:
                clipped = clip(regions, resolve_memory(proc.pid, rule.memory))
                pieces = [piece for r in clipped for piece in seen.split(r, since)]
                located = [replace(r, idle_seconds=snap.time - when, hot_streak=streak, hot_edge=edge)
                           for r, (_piece, when, streak, edge) in zip(self._located(proc, [p[0] for p in pieces]),
                                                                      pieces)]
                access[proc.identity] = ProcessAccess(
                    regions=tuple(located), sample_us=attrs.sample_us, aggr_us=attrs.aggr_us)
            except NumaError:
                continue   # gone or unreadable since the scan: no measurement this tick
        self._last_error = ""
        self.last = replace(snap, access=access)
        return self.last

    def preview(self, snap: Snapshot) -> Snapshot:
        """``snap`` (a one-off scan) with the last tick's measurements: a plan preview
        must not drive the kdamond from another thread."""
        last = self.last
        if last is None:
            return replace(snap, access_missing=missing_reason(self.kdamond.admin))
        return replace(snap, access=last.access, access_missing=last.access_missing)

    def stop(self) -> None:
        """Turn DAMON off and remove what the daemon added (the daemon's shutdown)."""
        self._quietly(self.kdamond.release)

    def _located(self, proc: ProcessInfo, regions: list[RawRegion]) -> list[RegionAccess]:
        samples = [sample_pages(r.start, r.end) for r in regions]
        nodes = self._locate(proc.pid, [a for pages in samples for a in pages]) if samples else []
        out, i = [], 0
        for region, pages in zip(regions, samples):
            found = nodes[i:i + len(pages)]
            i += len(pages)
            out.append(RegionAccess(region.start, region.end, region.nr_accesses, region.age,
                                    estimate_nodes(region.end - region.start, found)))
        return out

    def _quietly(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except DamonError as exc:
            self._note(str(exc))

    def _note(self, message: str) -> None:
        if message != self._last_error:
            log.warning("DAMON: %s; tier rules wait", message)
            self._last_error = message


class Seen:
    """The sensor's own memory of one process's accesses, per ``IDLE_CHUNK``: when a region
    covering the chunk last showed an access, and for how many measurements in a row."""

    def __init__(self) -> None:
        self.last: dict[int, float] = {}
        self.streak: dict[int, int] = {}
        self.edge: set[int] = set()
        self._previous: float | None = None     # the measurement before this one

    def note(self, regions: list[RawRegion], now: float) -> None:
        """Remember ``now`` for every chunk a region with any access touches; count the streak
        only for chunks regions with accesses cover whole, but for a ``SLIVER``.  A hot region's
        edge inside a chunk makes the chunk not idle, but not hot: promoting it moved the cold
        2 MiB next to a hot range back and forth (4 moves in 25 s in the tiered guest).  A chunk
        covered whole whose neighbour is not is at the edge of the hot run: noted apart
        (``edge``), since DAMON's region boundaries wander by a few MiB there."""
        covered = accessed_bytes(regions)
        whole = {chunk for chunk, nbytes in covered.items() if nbytes >= IDLE_CHUNK - SLIVER}
        streak: dict[int, int] = {}
        for chunk in whole:
            before = self.streak.get(chunk, 0) if self.last.get(chunk) == self._previous else 0
            streak[chunk] = min(MAX_STREAK, before + 1)
        for chunk in covered:
            self.last[chunk] = now
        self.edge = {chunk for chunk in whole if chunk - 1 not in whole or chunk + 1 not in whole}
        self.streak, self._previous = streak, now

    def _key(self, chunk: int, since: float) -> tuple[float, int, bool]:
        return self.last.get(chunk, since), self.streak.get(chunk, 0), chunk in self.edge

    def split(self, region: RawRegion, since: float) -> list[tuple[RawRegion, float, int, bool]]:
        """``region`` cut where the last access seen, the streak or the edge flag changes:
        (piece, when, streak, edge).

        DAMON's boundaries move by a few MiB from one aggregation to the next; a
        large idle region whose edge once overlapped a hot one would otherwise
        count as touched as a whole and never be demoted, and a large region
        with a hot corner would be promoted as a whole."""
        pieces: list[tuple[RawRegion, float, int, bool]] = []
        lo = region.start
        while lo < region.end:
            key = self._key(lo // IDLE_CHUNK, since)
            hi = min(region.end, (lo // IDLE_CHUNK + 1) * IDLE_CHUNK)
            while hi < region.end and self._key(hi // IDLE_CHUNK, since) == key:
                hi = min(region.end, hi + IDLE_CHUNK)
            pieces.append((RawRegion(lo, hi, region.nr_accesses, region.age), *key))
            lo = hi
        return pieces


def accessed_bytes(regions: list[RawRegion]) -> dict[int, int]:
    """Per ``IDLE_CHUNK``, the bytes of it that regions with any access cover."""
    covered: dict[int, int] = {}
    for r in regions:
        if r.nr_accesses > 0:
            for chunk in range(r.start // IDLE_CHUNK, (r.end - 1) // IDLE_CHUNK + 1):
                lo, hi = max(r.start, chunk * IDLE_CHUNK), min(r.end, (chunk + 1) * IDLE_CHUNK)
                covered[chunk] = covered.get(chunk, 0) + hi - lo
    return covered


def clip(regions: list[RawRegion], ranges: list[tuple[int, int]]) -> list[RawRegion]:
    """The parts of DAMON's regions inside ``ranges`` (both in address order): DAMON's
    regions span unmapped gaps, which no move should walk."""
    out = []
    for r in regions:
        for start, end in ranges:
            lo, hi = max(r.start, start), min(r.end, end)
            if lo < hi:
                out.append(RawRegion(lo, hi, r.nr_accesses, r.age))
    return out


def sample_pages(start: int, end: int, samples: int = SAMPLES_PER_REGION) -> list[int]:
    """Up to ``samples`` page addresses spread evenly over ``[start, end)``."""
    first = start - start % PAGE_SIZE
    pages = max(1, (end - first + PAGE_SIZE - 1) // PAGE_SIZE)
    step = max(1, pages // samples)
    return [first + i * PAGE_SIZE for i in range(0, pages, step)][:samples]


def estimate_nodes(size: int, found: list[int]) -> dict[int, int]:
    """Bytes per node of a region of ``size`` from its sampled pages' nodes (negative =
    not present: counted as nothing)."""
    if not found:
        return {}
    out: dict[int, int] = {}
    for node in found:
        if node >= 0:
            out[node] = out.get(node, 0) + 1
    return {node: size * count // len(found) for node, count in out.items()}
