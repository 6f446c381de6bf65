"""One scan of the machine into a :class:`Snapshot`, reading /proc and sysfs directly.

Cheap by construction: one pass in C over every ``/proc/PID/stat``
(:mod:`numad_py.procscan`) gives comm, start time, RSS and threads, and a
comm that rules out every rule is remembered, so such a process costs one
set lookup on later scans; ``status`` (uid), ``cgroup``, ``exe``
and ``cmdline`` are read lazily, only when a rule's criteria get that far
for that process, and a candidate (a process some rule matches) carries
only those its match read: matching is their only use, and the planner's
match reads the same ones again.  Its ``status`` gives affinity and the
nodes its cpuset allows (``Mems_allowed_list``, the cpuset's effective mems),
so a candidate of a rule on ``comm`` costs one file a scan beside its
residency, where it cost four and a walk up the cgroup tree.  Only
candidates are in the snapshot, with the residency of the memory the
matching rule moves.  Given the daemon's
history, the residency of a process no rule acts on this tick, or that a
``once`` rule never attempted anything for, is reused from an earlier scan
while it stands (:func:`may_reuse_residency`,
:class:`~numad_py.sense.residency.ResidencyCache`), and so is what its
``status`` said: a placed candidate of a rule on ``comm`` then costs no
file beside its line of the C pass.  A process that
vanishes mid-scan is skipped silently; a field we may not read becomes None.

Every other /proc read goes through :mod:`numad_py.procfs` (ProcessGone /
PermissionDenied / NumaError).  Paths are injectable (``proc_root``,
``sys_root``) so tests build a fake tree.  psutil is not
used: it cannot read a fake tree, and a per-process psutil object costs
several times the one ``stat`` read the scan needs.  Start times use
psutil's formula (btime + starttime / CLK_TCK), as :func:`procfs.start_time`
does, so a snapshot and a later re-check give the same identity.
"""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path
from collections.abc import Callable, Iterator

from .. import procfs
from ..config.models import Config, Rule
from ..decide.history import History, ProcessHistory
from ..decide.match import first_rule, rejected_by_comm
from ..decide.planner import is_due, reads_task_policy
from ..decide.snapshot import NodeInfo, ProcessInfo, Snapshot
from ..errors import NumaError, PermissionDenied, ProcessGone
from ..procfs import CLOCK_TICKS, parse_cpu_times, parse_list, parse_proc_cgroup, parse_status_fields
from ..procscan import StatLine, StatScanner
from ..topology import NODE_DIR, read_node_memory, read_topology
from .maps import parse_task_policy
from .residency import ResidencyCache, StatusFacts, memory_residency, page_migrations


# CPUs, distances, memory tiers and HMAT figures change only on hotplug: re-read
# when the online node list changes or after this many seconds; free memory is
# read every scan.  In an idle 2-node guest the whole topology read was 14 % of
# the daemon's profile samples.
TOPOLOGY_REFRESH = 60.0
# Distinct comms remembered as ruled out; a machine renaming its threads
# without end (prctl PR_SET_NAME) only makes the set start over.
MAX_RULED_OUT_COMMS = 16_384
_STATUS_FIELDS = ("Uid", "Cpus_allowed_list", "Mems_allowed_list")


class _Gone(Exception):
    """The process exited while we read it."""


class _LazyProcess:
    """Match facts for one pid, each read from /proc on first use (see decide.match.ProcessFacts)."""

    def __init__(self, root: str, stat: StatLine, *, start_time: float, page_size: int,
                 user_of: Callable[[int], str | None]):
        self.root = root
        self.pid = stat.pid
        self.comm = stat.comm
        self.threads = stat.threads
        self.rss = stat.rss_pages * page_size
        self.start_time = start_time
        self._user_of = user_of
        self._cache: dict[str, str | bytes | None] = {}
        self._status: dict[str, str] | None = None

    def _read(self, name: str, reader: Callable[..., str | bytes]) -> str | bytes | None:
        if name not in self._cache:
            try:
                self._cache[name] = reader(self.pid, name, root=self.root)
            except ProcessGone:
                raise _Gone from None
            except NumaError:  # PermissionDenied on another user's exe, or a read error: unknown
                self._cache[name] = None
        return self._cache[name]

    def _text(self, name: str) -> str | None:
        value = self._read(name, procfs.read_text)
        return value if isinstance(value, str) else None

    @property
    def status(self) -> dict[str, str]:
        """The fields of ``status`` numad-py uses, parsed once ({} when unreadable)."""
        if self._status is None:
            self._status = parse_status_fields(self._text("status") or "", _STATUS_FIELDS)
        return self._status

    @property
    def uid(self) -> int | None:
        uids = self.status.get("Uid")
        return int(uids.split()[0]) if uids else None

    @property
    def user(self) -> str | None:
        uid = self.uid
        return None if uid is None else self._user_of(uid)

    @property
    def cgroup(self) -> str | None:
        text = self._text("cgroup")
        return parse_proc_cgroup(text) if text else None

    @property
    def exe(self) -> str | None:
        value = self._read("exe", procfs.readlink)
        return value if isinstance(value, str) else None

    @property
    def cmdline(self) -> tuple[str, ...]:
        raw = self._read("cmdline", procfs.read_bytes)
        if not isinstance(raw, bytes) or not raw:
            return ()
        return tuple(arg.decode(errors="replace") for arg in raw.rstrip(b"\0").split(b"\0"))

    @property
    def cpu_affinity(self) -> frozenset[int] | None:
        return parse_list(self.status.get("Cpus_allowed_list"))

    @property
    def mems_allowed(self) -> frozenset[int] | None:
        return parse_list(self.status.get("Mems_allowed_list"))

    def status_facts(self) -> StatusFacts:
        return StatusFacts(uid=self.uid, cpu_affinity=self.cpu_affinity, mems_allowed=self.mems_allowed)

    def read(self, name: str) -> bool:
        """Whether ``name`` (``exe``, ``cmdline``, ``cgroup``, ``status``) was read, by a match."""
        return name in self._cache


class Sensor:
    """Takes snapshots; keeps the previous CPU counters so load is measured between scans."""

    def __init__(
        self,
        *,
        proc_root: str | Path = "/proc",
        sys_root: str | Path = "/sys",
        clock: Callable[[], float] = time.time,
        history: Callable[[], History | None] | None = None,
    ):
        """``history``: the daemon's, read at each scan; with it, residency reads are reused where
        :func:`may_reuse_residency` allows (a one-off snapshot passes none and reads everything)."""
        self.proc_root = Path(proc_root)
        self.sys_root = Path(sys_root)
        self._online_path = f"{sys_root}/{NODE_DIR}/online"
        self.clock = clock
        self._page_size = os.sysconf("SC_PAGE_SIZE")
        self._history = history
        self._residency = ResidencyCache()
        self._users: dict[int, str | None] = {}
        self._last_cpu_times: dict[int, tuple[int, int]] = {}
        self._stat_scanner: StatScanner | None = None   # made at the first scan
        # comms that no rule of ``_comms_config`` can match, whatever else is
        # true of the process: the scan skips them without building anything.
        self._comms_config: Config | None = None
        self._ruled_out_comms: set[bytes] = set()
        # The topology except free memory, with the online list and the time it was read at.
        self._topology: tuple[str, float, tuple[NodeInfo, ...], dict[tuple[int, int], int]] | None = None

    def snapshot(self, config: Config) -> Snapshot:
        now = self.clock()
        nodes, distances = self._nodes()
        proc_stat = procfs.read_system("stat", root=str(self.proc_root))
        history = self._history() if self._history is not None else None
        self._residency.begin(self._page_migrations() if history is not None else None)
        return Snapshot(
            time=now,
            nodes=nodes,
            distances=distances,
            processes=tuple(self._candidates(config, procfs.parse_boot_time(proc_stat), now, history)),
            numa_balancing=self._numa_balancing(),
            cpu_load=self._cpu_load(proc_stat, nodes),
        )

    def _nodes(self) -> tuple[tuple[NodeInfo, ...], dict[tuple[int, int], int]]:
        try:
            with open(self._online_path) as f:
                online = f.read()
        except FileNotFoundError:
            return (), {}  # a kernel without NUMA: nothing to place
        now = self.clock()
        cached = self._topology
        if cached is None or cached[0] != online or abs(now - cached[1]) >= TOPOLOGY_REFRESH:
            topo = read_topology(self.sys_root)
            nodes = tuple(
                NodeInfo(id=n.id, cpus=n.cpus, mem_total=n.mem_total, mem_free=n.mem_free, has_cpu=n.has_cpu,
                         tier=topo.tier_of(n.id))
                for n in topo.nodes
            )
            distances = dict(topo.distances)
            self._topology = (online, now, nodes, distances)
            return nodes, dict(distances)
        _online, _read_at, nodes, distances = cached
        fresh = []
        for n in nodes:   # built, not dataclasses.replace(): that introspects the fields each call
            total, free = read_node_memory(n.id, self.sys_root)
            fresh.append(NodeInfo(id=n.id, cpus=n.cpus, mem_total=total, mem_free=free, has_cpu=n.has_cpu,
                                  tier=n.tier))
        return tuple(fresh), dict(distances)

    def _page_migrations(self) -> int | None:
        try:
            return page_migrations(procfs.read_system("vmstat", root=str(self.proc_root)))
        except NumaError:
            return None

    def _candidates(self, config: Config, boot_time: float, now: float,
                    history: History | None) -> Iterator[ProcessInfo]:
        # The hot loop of every scan.  The stat lines come from one C pass;
        # a comm that rules out every rule is remembered per config, so on
        # later scans such a process costs one read of its comm file, in C.
        if self._stat_scanner is None:
            self._stat_scanner = StatScanner(str(self.proc_root))
        if config is not self._comms_config or len(self._ruled_out_comms) > MAX_RULED_OUT_COMMS:
            self._comms_config, self._ruled_out_comms = config, set()
        root = str(self.proc_root)
        stats = self._stat_scanner.scan(skip_comms=self._ruled_out_comms)
        for raw in self._stat_scanner.kernel_comms:    # never candidates; ruled out, they cost less
            comm = raw.decode(errors="replace")
            if rejected_by_comm(comm, config.rules, config.daemon):
                self._ruled_out_comms.add(comm.encode())
        for stat in stats:
            if rejected_by_comm(stat.comm, config.rules, config.daemon):
                self._ruled_out_comms.add(stat.comm.encode())
                continue
            proc = _LazyProcess(root, stat, start_time=stat.starttime / CLOCK_TICKS + boot_time,
                                page_size=self._page_size, user_of=self._user_name)
            try:
                rule = first_rule(config.rules, proc)   # the global filters passed above
                reuse = (history is not None and rule is not None
                         and may_reuse_residency(rule, history.get((proc.pid, proc.start_time)), now,
                                                 config.daemon.cooldown))
                info = None if rule is None else self._describe(proc, rule, now=now, reuse=reuse)
            except _Gone:
                continue
            if info is not None:
                yield info

    def _describe(self, proc: _LazyProcess, rule: Rule, *, now: float, reuse: bool) -> ProcessInfo:
        identity = (proc.pid, proc.start_time)
        policy = reads_task_policy(rule)
        key = (repr(rule.memory), policy)
        earlier = self._residency.get(identity, key, proc.rss, now) if reuse else None
        if earlier is not None:
            residency: dict[int, int] | None = earlier.residency
            task_policy = earlier.task_policy
            # status, unless the match read it anyway: one file less per candidate and scan
            status = proc.status_facts() if proc.read("status") else earlier.status
        else:
            residency, task_policy = self._read_residency(proc.pid, rule.memory, policy=policy)
            status = proc.status_facts()
            if residency is not None:
                self._residency.put(identity, key, proc.rss, now, residency, task_policy, status)
        return ProcessInfo(
            pid=proc.pid,
            start_time=proc.start_time,
            comm=proc.comm,
            exe=proc.exe if proc.read("exe") else None,
            cmdline=proc.cmdline if proc.read("cmdline") else (),
            uid=status.uid,
            user=None if status.uid is None else self._user_name(status.uid),
            cgroup=proc.cgroup if proc.read("cgroup") else None,
            rss=proc.rss,
            residency=residency,
            threads=proc.threads,
            cpu_affinity=status.cpu_affinity,
            mems_allowed=status.mems_allowed,
            task_policy=task_policy,
        )

    def _read_residency(self, pid: int, memory: str | list[str], *,
                        policy: bool) -> tuple[dict[int, int] | None, str | None]:
        root = str(self.proc_root)
        try:
            if policy:   # the planner reads it for some rules (reads_task_policy)
                text = procfs.read_text(pid, "numa_maps", root=root)   # one page-table walk for both
                task_policy: str | None = parse_task_policy(text)
                residency = memory_residency(pid, memory, root, numa_maps_text=text)
            else:
                task_policy = None
                residency = memory_residency(pid, memory, root)
        except ProcessGone:
            raise _Gone from None
        except PermissionDenied:
            return None, None
        return residency, task_policy

    def _user_name(self, uid: int) -> str | None:
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._users[uid] = None
        return self._users[uid]

    def _numa_balancing(self) -> int | None:
        try:
            return int(procfs.read_system("sys/kernel/numa_balancing", root=str(self.proc_root)))
        except (NumaError, ValueError):
            return None

    def _cpu_load(self, proc_stat: str, nodes: tuple[NodeInfo, ...]) -> dict[int, float]:
        """Busy fraction per node since the previous scan (since boot on the first)."""
        times = parse_cpu_times(proc_stat)
        load = {}
        for node in nodes:
            busy = total = 0
            for cpu in node.cpus:
                if cpu in times:
                    now_busy, now_total = times[cpu]
                    last_busy, last_total = self._last_cpu_times.get(cpu, (0, 0))
                    busy += now_busy - last_busy
                    total += now_total - last_total
            load[node.id] = busy / total if total > 0 else 0.0
        self._last_cpu_times = times
        return load


def may_reuse_residency(rule: Rule, entry: ProcessHistory | None, now: float, cooldown: float) -> bool:
    """Whether an earlier residency read may stand in for this scan's (ResidencyCache says
    for how long).  Never at first sight or for a tier rule (its own pace).  Yes when no rule
    acts on the process this tick (``is_due``, asked as the planner asks it); and under a
    ``once`` rule without ``every`` that never attempted anything for it (every fresh read
    found it in place, or the rule only advises): that answer stands while the read does.
    A move planned on a reused read still moves what is misplaced now: the executor
    migrates the rule's memory, not the read's numbers."""
    if rule.tier is not None or entry is None:
        return False
    if not is_due(rule, entry, now, cooldown):
        return True
    return rule.once and rule.every is None and entry.last_action is None and not entry.handled_once


def take_snapshot(config: Config, **roots) -> Snapshot:
    """A one-off snapshot (CPU load since boot); the daemon keeps a :class:`Sensor` instead."""
    return Sensor(**roots).snapshot(config)
