"""What the control plane senses on the machine (a fake one in host tests).

Process facts come from :mod:`numad_py.procfs` only (one OSError map); page
residency from ``move_pages`` queries in bounded chunks, so a query of a
huge range costs no more than the memory actually mapped in it, is capped,
and stops between chunks when its client goes.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import procfs
from ..errors import InvalidArgument
from ..nodes import parse_nodes
from ..selectors import parse_maps, parse_range, select_mappings
from ..sense.maps import parse_numa_maps
from ..topology import Topology
from .credentials import Credentials, credentials

QUERY_CHUNK_PAGES = 1 << 16          # pages per move_pages query between cancellation checks
MAX_QUERY_PAGES = 1 << 24            # mapped pages one query may look at (64 GiB of 4 KiB pages)


class QueryTooLarge(InvalidArgument):
    """The range maps more pages than one query may look at."""


def mapped_parts(maps_text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` that some mapping covers, in address order."""
    parts = []
    for m in parse_maps(maps_text):
        lo, hi = max(start, m.start), min(end, m.end)
        if lo < hi:
            parts.append((lo, hi))
    return parts


class KernelHost:
    """Sensing for requests: credentials, nodes, mappings, residency, drain."""

    def topology(self) -> Topology:
        from ..topology import read_topology
        return read_topology()

    def node_snapshot(self):
        """Free memory, CPU load and distances per node, for ``advise``."""
        from ..sense.node_load import node_snapshot
        return node_snapshot()

    def credentials(self, pid: int) -> Credentials:
        """Identity and owner in one snapshot (ProcessGone if the pid changed hands)."""
        return credentials(pid)

    def target_nodes(self, spec: str) -> frozenset[int]:
        from ..numa import check_nodes
        nodes = parse_nodes(spec, all_nodes=self.topology().memory_nodes)
        return check_nodes(nodes)

    def missing_mappings(self, pid: int, names: tuple[str, ...]) -> list[str]:
        if not names:
            return []
        maps = parse_maps(procfs.read_text(pid, "maps"))
        return [n for n in names if not select_mappings(maps, n)]

    def query(self, pid: int, range_text: str | None,
              cancelled: Callable[[], bool] = lambda: False) -> dict:
        if not range_text:
            per_start = parse_numa_maps(procfs.read_text(pid, "numa_maps"))
            nodes: dict[int, int] = {}
            for _start, per_node in per_start:
                for node, nbytes in per_node.items():
                    nodes[node] = nodes.get(node, 0) + nbytes
            return {"pid": pid, "nodes": {str(n): b for n, b in sorted(nodes.items())},
                    "total_bytes": sum(nodes.values())}
        start, end = parse_range(range_text)
        return dict(self.range_query(pid, start, end, cancelled), pid=pid, range=range_text)

    def range_query(self, pid: int, start: int, end: int, cancelled: Callable[[], bool]) -> dict:
        from ..numa import PAGE_SIZE, range_residency
        parts = mapped_parts(procfs.read_text(pid, "maps"), start, end)
        pages = sum((hi - lo + PAGE_SIZE - 1) // PAGE_SIZE for lo, hi in parts)
        if pages > MAX_QUERY_PAGES:
            raise QueryTooLarge(f"the range maps {pages} pages; a query looks at most at "
                                f"{MAX_QUERY_PAGES} (ask for a narrower range)")
        nodes: dict[int, int] = {}
        other: dict[str, int] = {}
        covered = sum(hi - lo for lo, hi in parts)
        # Unmapped addresses hold no page: move_pages would say EFAULT, counted as not present.
        unmapped = (end - start) - covered
        if unmapped:
            other["not_present"] = unmapped
        step = QUERY_CHUNK_PAGES * PAGE_SIZE
        for lo, hi in parts:
            for at in range(lo, hi, step):
                if cancelled():
                    raise InterruptedError("the client went away")
                res = range_residency(pid, at, min(hi, at + step))
                for node, nbytes in res["nodes"].items():
                    nodes[node] = nodes.get(node, 0) + nbytes
                for name, nbytes in res["other"].items():
                    other[name] = other.get(name, 0) + nbytes
        return {"nodes": {str(n): b for n, b in sorted(nodes.items())}, "other": other}

    def drain_targets(self, node: int, to: str | None) -> list[int]:
        from .drain import resolve_targets
        topo = self.topology()
        wanted = None if to is None else parse_nodes(to, all_nodes=topo.memory_nodes - {node})
        return resolve_targets(topo, node, wanted)

    def drain(self, node: int, targets: list[int], *, move_all: bool, executor, progress,
              cancelled) -> dict:
        from .drain import drain_node
        return drain_node(node, executor=executor, topology=self.topology(), to=targets,
                          move_all=move_all, progress=progress, cancelled=cancelled,
                          exclude=()).to_dict()
