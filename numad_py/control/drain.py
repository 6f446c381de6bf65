"""Drain a node: move every movable page of every process off it.

For maintenance, or before offlining a memory-only node.  Each process with
pages on the node (per ``/proc/PID/numa_maps``) gets one ``migrate`` action
for the mappings that hold pages there, through the daemon's executor with
reason ``"drain"`` — so a drain shares the migration budget and the stall
bound with scheduled work, and is cancelled between chunks.

Default targets: the other memory nodes, nearest (by the SLIT distance from
the drained node) first.  ``migrate_ranges`` spreads the moved pages
round-robin over its targets and leaves pages already on any target where
they are, so giving it *all* other memory nodes moves only the pages on the
drained node.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable

from .. import procfs
from ..decide.actions import Action
from ..errors import InvalidNode, NumaError
from ..nodes import format_nodes
from ..selectors import parse_maps
from ..sense.maps import parse_numa_maps
from ..topology import Topology

log = logging.getLogger("numad_py.control")


def make_action(*, pid: int, start_time: float, comm: str, rule: str, target: Iterable[int],
                memory="all", move_all: bool = False, from_nodes: Iterable[int] = (),
                reason: str = "request") -> Action:
    memory = memory if isinstance(memory, str) else tuple(memory)
    return Action(kind="migrate", pid=pid, start_time=start_time, comm=comm, rule=rule,
                  target_nodes=frozenset(target), memory=memory, move_all=move_all,
                  from_nodes=frozenset(from_nodes), reason=reason)


def default_targets(topology: Topology, node: int) -> list[int]:
    """The other memory nodes, nearest to ``node`` first (ties by id)."""
    others = sorted(topology.memory_nodes - {node})
    return sorted(others, key=lambda other: (topology.distances.get((node, other), 255), other))


def resolve_targets(topology: Topology, node: int, to: Iterable[int] | None) -> list[int]:
    if node not in topology.node_ids:
        raise InvalidNode(f"node {node} does not exist (online nodes: {format_nodes(topology.node_ids)})")
    if to is None:
        targets = default_targets(topology, node)
        if not targets:
            raise InvalidNode(f"node {node} is the only memory node: there is nowhere to drain it to")
        return targets
    wanted = frozenset(to)
    if node in wanted:
        raise InvalidNode(f"cannot drain node {node} onto itself (targets {format_nodes(wanted)})")
    missing = wanted - topology.node_ids
    if missing:
        raise InvalidNode(f"target node {format_nodes(missing)} does not exist")
    memless = wanted - topology.memory_nodes
    if memless:
        raise InvalidNode(f"target node {format_nodes(memless)} has no memory")
    return sorted(wanted, key=lambda other: (topology.distances.get((node, other), 255), other))


@dataclass
class Candidate:
    pid: int
    comm: str
    ranges: list[tuple[int, int]]
    bytes_on_node: int

    @property
    def span(self) -> int:
        return sum(end - start for start, end in self.ranges)


def candidates(node: int, *, proc_root: str = "/proc", exclude: Iterable[int] = ()) -> list[Candidate]:
    """Processes with pages on ``node`` and the mappings holding them (largest first)."""
    skip = set(exclude)
    out = []
    for pid in procfs.pids(root=proc_root):
        if pid in skip:
            continue
        try:
            numa_maps = parse_numa_maps(procfs.read_text(pid, "numa_maps", root=proc_root))
            on_node = {start: nodes[node] for start, nodes in numa_maps if nodes.get(node)}
            if not on_node:
                continue
            maps = parse_maps(procfs.read_text(pid, "maps", root=proc_root))
            ranges = [(m.start, m.end) for m in maps if m.start in on_node
                      and m.path not in ("[vdso]", "[vvar]", "[vsyscall]")]
            comm = _comm(pid, proc_root)
        except NumaError:
            continue  # gone, or not ours to read: nothing to drain from it
        if ranges:
            out.append(Candidate(pid, comm, ranges, sum(on_node.values())))
    return sorted(out, key=lambda c: (-c.bytes_on_node, c.pid))


def _comm(pid: int, proc_root: str) -> str:
    try:
        return procfs.read_text(pid, "comm", root=proc_root).strip()
    except NumaError:
        return "?"


@dataclass
class DrainResult:
    node: int
    targets: list[int]
    processes: list[dict] = field(default_factory=list)
    pages_moved: int = 0
    bytes_moved: int = 0
    pages_failed: Counter = field(default_factory=Counter)
    bytes_before: int = 0
    bytes_remaining: int | None = None
    cancelled: bool = False
    dry_run: bool = False

    def to_dict(self) -> dict:
        return {
            "node": self.node,
            "targets": format_nodes(self.targets),
            "target_order": list(self.targets),
            "processes": self.processes,
            "process_count": len(self.processes),
            "pages_moved": self.pages_moved,
            "bytes_moved": self.bytes_moved,
            "pages_failed": dict(sorted(self.pages_failed.items())),
            "bytes_on_node_before": self.bytes_before,
            "bytes_on_node_remaining": self.bytes_remaining,
            "cancelled": self.cancelled,
            "dry_run": self.dry_run,
        }


def drain_node(node: int, *, executor, topology: Topology, to: Iterable[int] | None = None,
               move_all: bool = False, progress: Callable[[int, int], None] | None = None,
               cancelled: Callable[[], bool] | None = None, proc_root: str = "/proc",
               exclude: Iterable[int] = (), rule: str = "drain") -> DrainResult:
    """Move every movable page of every process off ``node``; see the module doc."""
    targets = resolve_targets(topology, node, to)
    found = candidates(node, proc_root=proc_root, exclude=exclude)
    result = DrainResult(node=node, targets=targets, bytes_before=sum(c.bytes_on_node for c in found),
                         dry_run=bool(getattr(executor, "dry_run", False)))
    total = sum(c.span for c in found)
    base = 0
    if progress is not None:
        progress(0, total)
    for cand in found:
        if cancelled is not None and cancelled():
            result.cancelled = True
            break
        summary = {"pid": cand.pid, "comm": cand.comm, "bytes_on_node": cand.bytes_on_node,
                   "mappings": len(cand.ranges)}
        try:
            start_time = procfs.start_time(cand.pid, root=proc_root)
        except NumaError:
            summary.update(status="gone", message="exited before its turn")
            result.processes.append(summary)
            base += cand.span
            continue
        action = make_action(pid=cand.pid, start_time=start_time, comm=cand.comm, rule=rule,
                             target=targets, memory=[f"{s:x}-{e:x}" for s, e in cand.ranges],
                             move_all=move_all, from_nodes={node}, reason=f"drain node {node}")

        def step(done: int, _total: int, _base=base) -> None:
            if progress is not None:
                progress(min(total, _base + done), total)

        outcome = executor.execute(action, reason="drain", progress=step, cancelled=cancelled)
        summary.update(status=outcome.status, message=outcome.message)
        r = outcome.result
        if r is not None:
            summary.update(pages_moved=r.moved, bytes_moved=r.bytes_moved,
                           pages_failed=dict(sorted(r.failed.items())))
            result.pages_moved += r.moved
            result.bytes_moved += r.bytes_moved
            result.pages_failed.update(r.failed)
        result.processes.append(summary)
        base += cand.span
        if outcome.status == "cancelled":
            result.cancelled = True
            break
    if progress is not None and not result.cancelled:
        progress(total, total)
    result.bytes_remaining = sum(c.bytes_on_node for c in candidates(node, proc_root=proc_root,
                                                                        exclude=exclude))
    log.info("drain node %d -> %s: %d process(es), %d pages moved, failed %s%s", node,
             format_nodes(targets), len(result.processes), result.pages_moved,
             dict(result.pages_failed) or "none", " (cancelled)" if result.cancelled else "")
    return result
