"""A process's address space as /proc shows it: maps, numa_maps, smaps.

Parsing is separate from reading so the parsers are tested on literal text;
every read goes through :mod:`numad_py.procfs` (one exception map).  The
selector grammar lives in :mod:`numad_py.selectors`; its names are
re-exported here only for the modules that still import them from sense
(``parse_range``, ``is_range``, ``select_mappings``, ``selected_mappings``,
``split_selectors``, ``Mapping``, ``parse_maps``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .. import procfs
from ..procfs import parse_smaps_huge  # noqa: F401  (re-export)
from ..selectors import (  # noqa: F401  (re-exports, see the docstring)
    Mapping,
    is_range,
    parse_maps,
    parse_range,
    ranges_of,
    select_mappings,
    selected_mappings,
    split_selectors,
)

_NODE_COUNT = re.compile(r"\bN([0-9]+)=([0-9]+)")
_PAGESIZE = re.compile(r"\bkernelpagesize_kB=([0-9]+)")
_HEX_ADDRESS = re.compile(r"[0-9a-fA-F]+")


def parse_numa_maps(text: str) -> list[tuple[int, dict[int, int]]]:
    """Per mapping start address: bytes resident on each node."""
    out = []
    for line in text.splitlines():
        addr, _, rest = line.partition(" ")
        if not _HEX_ADDRESS.fullmatch(addr):
            continue
        size_kb = _PAGESIZE.search(rest)
        page = int(size_kb.group(1)) * 1024 if size_kb else 4096
        per_node: dict[int, int] = {}
        for node, pages in _NODE_COUNT.findall(rest):
            per_node[int(node)] = per_node.get(int(node), 0) + int(pages) * page
        out.append((int(addr, 16), per_node))
    return out


def parse_task_policy(text: str) -> str:
    """The policy most mappings show in numa_maps: the task's own, where a mapping has none
    (``default``, ``prefer:1``, ``bind:0-1``, ``interleave:0-3``…)."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        addr, _, rest = line.partition(" ")
        if _HEX_ADDRESS.fullmatch(addr):
            policy = rest.split(" ", 1)[0]
            counts[policy] = counts.get(policy, 0) + 1
    return max(counts, key=lambda p: (counts[p], p)) if counts else "default"


def read_task_policy(pid: int, proc_root: str = procfs.PROC) -> str:
    return parse_task_policy(procfs.read_text(pid, "numa_maps", root=proc_root))


def read_maps(pid: int, proc_root: str = procfs.PROC) -> list[Mapping]:
    return procfs.maps(pid, root=proc_root)


def read_numa_maps(pid: int, proc_root: str = procfs.PROC) -> list[tuple[int, dict[int, int]]]:
    return parse_numa_maps(procfs.read_text(pid, "numa_maps", root=proc_root))


def read_huge_bytes(pid: int, proc_root: str = procfs.PROC) -> dict[int, int]:
    return procfs.anon_huge_bytes(pid, root=proc_root)


def process_residency(pid: int, proc_root: str = procfs.PROC) -> dict[int, int]:
    """Bytes per node over the whole process, as numastat -p counts them."""
    return mappings_residency(read_numa_maps(pid, proc_root))


def mappings_residency(numa_maps: list[tuple[int, dict[int, int]]], starts: set[int] | None = None) -> dict[int, int]:
    """Bytes per node summed over the numa_maps entries at ``starts`` (all when None)."""
    total: dict[int, int] = {}
    for start, per_node in numa_maps:
        if starts is None or start in starts:
            for node, nbytes in per_node.items():
                total[node] = total.get(node, 0) + nbytes
    return total


def resolve_memory(pid: int, memory: str | Iterable[str] | None, proc_root: str = procfs.PROC) -> list[tuple[int, int]]:
    """Address ranges of ``pid`` named by a rule's ``memory`` ("all" or selectors)."""
    explicit, named = split_selectors(memory)
    maps = read_maps(pid, proc_root) if named else []
    return ranges_of(maps, memory)
