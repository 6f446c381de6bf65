"""Where the memory a rule manages is resident, per node.

The planner compares this with the rule's target, so it must count only
what the rule would move: a rule that moves ``[heap]`` must not see the
process's libraries left on another node as "drifted", or ``every`` would
plan the same migration on each pass.

Named mappings come from numa_maps (one read, in which the kernel walks
the process's page tables); explicit address
ranges need a ``move_pages`` query, because numa_maps only sums whole
mappings and a range may cover part of one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..selectors import selected_mappings, split_selectors
from .maps import mappings_residency, parse_numa_maps, read_maps, read_numa_maps


def memory_residency(pid: int, memory, proc_root: str = "/proc", *,
                     numa_maps_text: str | None = None) -> dict[int, int]:
    """Bytes per node of what ``memory`` ("all" or a rule's selectors) names in ``pid``.

    ``numa_maps_text``: the process's numa_maps when the caller has already read it."""
    explicit, named = split_selectors(memory)
    total: dict[int, int] = {}
    if named:
        numa_maps = (read_numa_maps(pid, proc_root) if numa_maps_text is None
                     else parse_numa_maps(numa_maps_text))
        starts = None if "all" in named else {m.start for m in selected_mappings(read_maps(pid, proc_root), named)}
        total = mappings_residency(numa_maps, starts)
    if explicit:
        from ..numa import range_residency   # the cffi binding, only when a rule names ranges
        for start, end in explicit:
            for node, nbytes in range_residency(pid, start, end)["nodes"].items():
                total[node] = total.get(node, 0) + nbytes
    return total


# A residency read is reused, where the sensor allows it, for this long at most.
# numa_maps walks the process's page tables: in the 2-node TCG guest a read of a CPU-busy
# 320 MiB process took 21-30 ms of CPU (median), and a snapshot with four such candidates
# 247-260 ms, against 95-102 ms reusing the reads (the numad side-by-side's busy workload).
REUSE_FOR = 60.0
# A read that found what the one before it found, that one at least REUSE_FOR earlier, stands
# for twice the time between them, up to this: a placed process that stays put is walked
# every 60, 120, 240, then 480 s (five placed 320 MiB processes in the guest: the re-reads
# were 12.7 ms of a 79 ms steady tick's CPU).
MAX_REUSE_FOR = 8 * REUSE_FOR
# ... and only while its RSS stays within 1/RSS_SLACK of what it was at the read.  Two reads
# agree when their bytes per node differ by at most 1/RSS_SLACK of the larger one in all.
RSS_SLACK = 64


@dataclass(frozen=True)
class StatusFacts:
    """What a candidate's ``/proc/PID/status`` said; reused with the residency read beside it."""
    uid: int | None
    cpu_affinity: frozenset[int] | None
    mems_allowed: frozenset[int] | None


@dataclass(frozen=True)
class _Read:
    key: object                    # what was read: the rule's memory selection, task policy or not
    rss: int
    migrations: int                # page_migrations() at the read
    at: float
    reuse_for: float               # how long it stands (longer after reads that agreed)
    residency: dict[int, int]
    task_policy: str | None
    status: StatusFacts


class ResidencyCache:
    """Residency reads the sensor may reuse, one per candidate, dropped when the process is
    not a candidate in a scan.  The candidate's status facts (uid, affinity, cpuset nodes) are
    kept and reused with it: the planner looks at them only for a process a rule acts on,
    which is read afresh, and a scan whose rules match on the user reads them anyway.

    A read stands while no page anywhere was migrated since (:func:`page_migrations`: the
    daemon's own moves, ``numad-py migrate``, migratepages, numad, compaction), the RSS is
    about the same and it is younger than its time to stand: REUSE_FOR, or, when it agreed
    with the read before it, twice the time between the two (up to MAX_REUSE_FOR), so a
    process that stays put is walked less and less often and one that drifts every
    REUSE_FOR.  What is left unseen, for that long: NUMA balancing's moves, and a process
    freeing memory on one node and allocating as much on another.  The sensor decides which
    processes may reuse a read (``sense.processes.may_reuse_residency``).
    """

    def __init__(self, reuse_for: float = REUSE_FOR, max_reuse_for: float = MAX_REUSE_FOR):
        self.reuse_for = reuse_for
        self.max_reuse_for = max_reuse_for
        self._reads: dict[tuple[int, float], _Read] = {}
        self._kept: dict[tuple[int, float], _Read] = {}
        self._migrations: int | None = None

    def begin(self, migrations: int | None) -> None:
        """A scan starts; ``migrations``: page_migrations() now (None: unknown, nothing is reused)."""
        self._reads, self._kept = self._kept, {}
        self._migrations = migrations

    def get(self, identity: tuple[int, float], key: object, rss: int, now: float) -> _Read | None:
        read = self._reads.get(identity)
        if (read is None or self._migrations is None or read.migrations != self._migrations
                or read.key != key or not _near(rss, read.rss)
                or not 0 <= now - read.at < read.reuse_for):
            return None
        self._kept[identity] = read
        return read

    def put(self, identity: tuple[int, float], key: object, rss: int, now: float,
            residency: dict[int, int], task_policy: str | None, status: StatusFacts) -> None:
        if self._migrations is not None:
            reuse_for = self._stands_for(self._reads.get(identity), key, rss, now, residency)
            self._kept[identity] = _Read(key, rss, self._migrations, now, reuse_for, residency, task_policy,
                                         status)

    def _stands_for(self, earlier: _Read | None, key: object, rss: int, now: float,
                    residency: dict[int, int]) -> float:
        """How long a read made now stands: twice its distance to an earlier read it agrees
        with (nothing migrated between them, same selection and RSS), else REUSE_FOR."""
        if (earlier is None or earlier.migrations != self._migrations or earlier.key != key
                or not _near(rss, earlier.rss)):
            return self.reuse_for
        nodes = residency.keys() | earlier.residency.keys()
        drift = sum(abs(residency.get(n, 0) - earlier.residency.get(n, 0)) for n in nodes)
        if drift * RSS_SLACK > max(sum(residency.values()), sum(earlier.residency.values())):
            return self.reuse_for
        return min(max(2 * (now - earlier.at), self.reuse_for), self.max_reuse_for)


def _near(rss: int, earlier: int) -> bool:
    """The RSS is about what it was (within 1/RSS_SLACK)."""
    return abs(rss - earlier) * RSS_SLACK <= earlier


def page_migrations(vmstat: str) -> int | None:
    """Pages migrated on the machine other than by NUMA balancing, from /proc/vmstat text:
    ``pgmigrate_success`` (every migration) less ``numa_pages_migrated`` (NUMA balancing's
    own, which runs all the time on a busy machine with balancing on).  None when the kernel
    does not count migrations."""
    migrated = _PGMIGRATE.search(vmstat)
    if migrated is None:
        return None
    balancing = _NUMA_MIGRATED.search(vmstat)
    return int(migrated[1]) - (int(balancing[1]) if balancing is not None else 0)


# Two searches, not a parse of every line: /proc/vmstat has ~170 lines, read every tick.
_PGMIGRATE = re.compile(r"^pgmigrate_success (\d+)$", re.M)
_NUMA_MIGRATED = re.compile(r"^numa_pages_migrated (\d+)$", re.M)
