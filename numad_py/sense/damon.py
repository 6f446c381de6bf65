"""DAMON through its sysfs interface: one kdamond, one virtual-address context, for the
processes tier rules match.

Layout (``/sys/kernel/mm/damon/admin``, 6.x with CONFIG_DAMON_SYSFS)::

    kdamonds/nr_kdamonds                       how many kdamonds (rewriting it rebuilds all of them)
    kdamonds/K/state                           on | off | commit | update_schemes_tried_regions ...
    kdamonds/K/contexts/0/operations           vaddr
    kdamonds/K/contexts/0/monitoring_attrs/intervals/{sample_us,aggr_us,update_us}
    kdamonds/K/contexts/0/monitoring_attrs/nr_regions/{min,max}
    kdamonds/K/contexts/0/targets/T/pid_target
    kdamonds/K/contexts/0/schemes/S/action     stat: counts only, changes nothing
    kdamonds/K/contexts/0/schemes/S/access_pattern/{sz,nr_accesses,age}/{min,max}   all 0 at first
    kdamonds/K/contexts/0/schemes/S/filters/0/{type,damon_target_idx,matching}
    kdamonds/K/contexts/0/schemes/S/tried_regions/R/{start,end,nr_accesses,age}

``tried_regions`` does not say which target a region belongs to, so scheme S
carries a ``target`` filter that drops every region not of target S
(``matching = N``): scheme S's tried regions are exactly target S's.

Targets change as processes come and go: any change restarts the kdamond
(off, rewrite, on), so every process starts from fresh regions (ages
restart too).  ``commit`` would keep the others' ages, but a removed target
shifts the indexes (its regions would be credited to the next process), and
in one probe in the 6.12 guest the first target showed no access at all
after a ``commit`` that appended a second one (cause not established).  The kdamond is claimed through a file in
the runtime dir, so a restarted daemon reuses its own kdamond and never
takes one another tool set up; :meth:`Kdamond.release` turns it off and
removes what it added.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence

log = logging.getLogger("numad_py.sense")

DAMON_ADMIN = Path("/sys/kernel/mm/damon/admin")
NEEDS_DAMON = "needs DAMON (6.x with CONFIG_DAMON_SYSFS)"
CLAIM_FILE = "damon-kdamond"
ULONG_MAX, UINT_MAX = (1 << 64) - 1, (1 << 32) - 1


class DamonError(Exception):
    """DAMON refused or is unusable; the message is one line."""


@dataclass(frozen=True)
class Attrs:
    """Monitoring attributes, in microseconds and regions."""

    sample_us: int = 5000
    aggr_us: int = 100_000
    update_us: int = 1_000_000
    min_regions: int = 100      # config/tier.py says why
    max_regions: int = 1000

    @classmethod
    def from_settings(cls, s) -> Attrs:   # config.models.DamonSettings
        return cls(int(s.sample * 1e6), int(s.aggregate * 1e6), int(s.update * 1e6), s.min_regions, s.max_regions)


@dataclass(frozen=True)
class RawRegion:
    start: int
    end: int
    nr_accesses: int
    age: int


def missing_reason(admin: Path = DAMON_ADMIN) -> str | None:
    """Why DAMON cannot serve on this machine (None: it can)."""
    return None if (admin / "kdamonds" / "nr_kdamonds").is_file() else NEEDS_DAMON


class Kdamond:
    """One kdamond with one vaddr context, driven through sysfs (``admin`` injectable for tests)."""

    def __init__(self, admin: Path = DAMON_ADMIN, *, claim_dir: Path | None = None):
        self.admin = Path(admin)
        self.claim = claim_dir / CLAIM_FILE if claim_dir is not None else None
        self.index: int | None = None
        self.pids: tuple[int, ...] = ()
        self.attrs: Attrs | None = None
        self._created = False          # we raised nr_kdamonds from 0: release lowers it again

    # --- paths ---------------------------------------------------------

    @property
    def kdamond(self) -> Path:
        assert self.index is not None
        return self.admin / "kdamonds" / str(self.index)

    @property
    def context(self) -> Path:
        return self.kdamond / "contexts" / "0"

    def _write(self, path: Path, value: object) -> None:
        try:
            path.write_text(f"{value}\n")
        except OSError as exc:
            raise DamonError(f"DAMON refused {value!r} for {path.relative_to(self.admin)}: "
                             f"{exc.strerror or exc}") from None

    def _read(self, path: Path) -> str:
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise DamonError(f"cannot read {path}: {exc.strerror or exc}") from None

    # --- claim -------------------------------------------------------

    def acquire(self) -> None:
        """Take our kdamond: the one our claim file names, or a new one if DAMON is unused."""
        if self.index is not None:
            return
        if missing_reason(self.admin):
            raise DamonError(NEEDS_DAMON)
        count = int(self._read(self.admin / "kdamonds" / "nr_kdamonds"))
        claimed = self._claimed()
        if claimed is not None and claimed < count:
            self.index = claimed
            self._write(self.kdamond / "state", "off") if self.running() else None
            log.info("DAMON: reusing kdamond %d left by an earlier run", claimed)
        elif count == 0:
            self._write(self.admin / "kdamonds" / "nr_kdamonds", 1)
            self.index, self._created = 0, True
        else:
            raise DamonError(f"DAMON is in use by another tool ({count} kdamond(s) configured); "
                             "tier rules need it to themselves")
        self._write(self.kdamond / "contexts" / "nr_contexts", 1)
        self._write(self.context / "operations", "vaddr")
        if self.claim is not None:
            self.claim.write_text(f"{self.index}\n")

    def _claimed(self) -> int | None:
        try:
            return int(self.claim.read_text()) if self.claim is not None else None
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        return self.index is not None and self._read(self.kdamond / "state") == "on"

    def release(self) -> None:
        """Turn it off and remove what we added; safe to call twice."""
        if self.index is None:
            return
        try:
            if self.running():
                self._write(self.kdamond / "state", "off")
            self._write(self.kdamond / "contexts" / "nr_contexts", 0)
            if self._created and int(self._read(self.admin / "kdamonds" / "nr_kdamonds")) == 1:
                self._write(self.admin / "kdamonds" / "nr_kdamonds", 0)
        finally:
            if self.claim is not None:
                self.claim.unlink(missing_ok=True)
            self.index, self.pids, self._created = None, (), False

    # --- targets ---------------------------------------------------------

    def monitor(self, pids: Sequence[int], attrs: Attrs) -> None:
        """Monitor exactly ``pids`` (in this order) with ``attrs``; off when there are none."""
        pids = tuple(pids)
        if not pids:
            if self.index is not None and self.running():
                self._write(self.kdamond / "state", "off")
            self.pids = ()
            return
        self.acquire()
        running = self.running()     # off by itself when all its processes exited
        if running and pids == self.pids and attrs == self.attrs:
            return
        if running:
            self._write(self.kdamond / "state", "off")
        self._configure(pids, attrs)
        self._write(self.kdamond / "state", "on")
        self.pids, self.attrs = pids, attrs

    def _configure(self, pids: tuple[int, ...], attrs: Attrs) -> None:
        ctx = self.context
        intervals = ctx / "monitoring_attrs" / "intervals"
        self._write(intervals / "sample_us", attrs.sample_us)
        self._write(intervals / "aggr_us", attrs.aggr_us)
        self._write(intervals / "update_us", attrs.update_us)
        regions = ctx / "monitoring_attrs" / "nr_regions"
        # min before max or max before min, whichever keeps min <= max at every step
        order = ("min", "max") if attrs.min_regions <= int(self._read(regions / "max") or 0) else ("max", "min")
        for name in order:
            self._write(regions / name, attrs.min_regions if name == "min" else attrs.max_regions)
        self._write(ctx / "targets" / "nr_targets", len(pids))
        for i, pid in enumerate(pids):
            self._write(ctx / "targets" / str(i) / "pid_target", pid)
        self._write(ctx / "schemes" / "nr_schemes", len(pids))
        for i in range(len(pids)):
            scheme = ctx / "schemes" / str(i)
            self._write(scheme / "action", "stat")
            # every region: the kernel's defaults (all 0) would match only empty, idle, new ones
            for name, top in (("sz", ULONG_MAX), ("nr_accesses", UINT_MAX), ("age", UINT_MAX)):
                self._write(scheme / "access_pattern" / name / "min", 0)
                self._write(scheme / "access_pattern" / name / "max", top)
            filters = scheme / "filters"
            self._write(filters / "nr_filters", 1)
            self._write(filters / "0" / "type", "target")
            self._write(filters / "0" / "damon_target_idx", i)
            self._write(filters / "0" / "matching", "N")   # drop regions of every other target

    # --- reading ---------------------------------------------------------

    def regions(self) -> dict[int, list[RawRegion]]:
        """Each monitored pid's regions as the last aggregation left them ({} when off)."""
        if not self.pids or not self.running():
            return {}
        try:
            self._write(self.kdamond / "state", "update_schemes_tried_regions")
        except DamonError as exc:
            # EINVAL/ESRCH: it stopped between the check and the request (its processes exited)
            if not self.running():
                return {}
            raise exc
        out: dict[int, list[RawRegion]] = {}
        for i, pid in enumerate(self.pids):
            out[pid] = read_tried_regions(self.context / "schemes" / str(i) / "tried_regions")
        return out


def read_tried_regions(directory: Path) -> list[RawRegion]:
    """The regions under a scheme's ``tried_regions`` dir, in address order."""
    out = []
    try:
        entries = [p for p in directory.iterdir() if p.name.isdigit()]
    except FileNotFoundError:
        return []
    for entry in entries:
        try:
            values = {name: int((entry / name).read_text()) for name in ("start", "end", "nr_accesses", "age")}
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                continue   # the kernel rebuilt the directory meanwhile
            raise DamonError(f"cannot read {entry}: {exc.strerror or exc}") from None
        out.append(RawRegion(**values))
    return sorted(out, key=lambda r: r.start)
