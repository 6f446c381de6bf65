"""A process's address space as /proc shows it: maps, numa_maps, smaps.

Parsing is separate from reading so the parsers are tested on literal text;
every read goes through :mod:`numad_py.procfs` (one exception map).  The
selector grammar is :mod:`numad_py.selectors`.

Neither ``re`` nor the selectors (``dataclasses``) load with this module:
``numad-py show`` reads numa_maps through it, and they would be most of its
start-up (issue 17).
"""

from __future__ import annotations

from .. import procfs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..selectors import Mapping

_HEX_DIGITS = "0123456789abcdefABCDEF"
_PAGE_SIZE = " kernelpagesize_kB="


def _is_hex(text: str) -> bool:
    return bool(text) and not text.strip(_HEX_DIGITS)


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def parse_numa_maps(text: str) -> list[tuple[int, dict[int, int]]]:
    """Per mapping start address: bytes resident on each node.

    Fields are found with str.split/find (C speed, half the time of the regular
    expressions this replaced on 6,000 lines; the daemon parses every candidate's
    numa_maps each tick)."""
    out = []
    for line in text.splitlines():
        addr, _, rest = line.partition(" ")
        if not _is_hex(addr):
            continue
        rest = " " + rest
        page = 4096
        at = rest.find(_PAGE_SIZE)
        if at >= 0:
            size_kb = rest[at + len(_PAGE_SIZE):].split(" ", 1)[0]
            page = int(size_kb) * 1024 if _is_number(size_kb) else page
        per_node: dict[int, int] = {}
        for field in rest.split(" N")[1:]:          # "<node>=<pages> ..."
            node, _, pages = field.partition("=")
            pages = pages.split(" ", 1)[0]
            if _is_number(node) and _is_number(pages):
                per_node[int(node)] = per_node.get(int(node), 0) + int(pages) * page
        out.append((int(addr, 16), per_node))
    return out


# The kernel's (mpol_to_str) modes whose names have a space in them.
TWO_WORD_POLICIES = ("prefer (many)", "weighted interleave")


def parse_task_policy(text: str) -> str:
    """The policy most mappings show in numa_maps: the task's own, where a mapping has none
    (``default``, ``prefer:1``, ``bind:0-1``, ``interleave:0-3``…)."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        addr, _, rest = line.partition(" ")
        if _is_hex(addr):
            words = 2 if rest.startswith(TWO_WORD_POLICIES) else 1
            policy = " ".join(rest.split(" ", words)[:words])
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
    from ..selectors import ranges_of, split_selectors
    explicit, named = split_selectors(memory)
    maps = read_maps(pid, proc_root) if named else []
    return ranges_of(maps, memory)
