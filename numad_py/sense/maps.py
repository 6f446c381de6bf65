"""A process's address space as /proc shows it: maps, numa_maps, smaps.

Parsing is separate from reading so the parsers are tested on literal text.
Reading another process's maps needs ptrace read access; the errors are
mapped to the package's exceptions here.
"""

from __future__ import annotations

import errno
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgument, PermissionDenied, ProcessGone, CAPABILITY_FOR


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    path: str  # "" for anonymous, "[heap]", "[stack]", "/usr/lib/...", ...

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def is_anon(self) -> bool:
        # Anonymous private memory; [heap] is anonymous too, [stack] is not
        # counted here because it is named explicitly.
        return self.path == "" or self.path == "[heap]"

    def label(self) -> str:
        return self.path or "anon"


def parse_maps(text: str) -> list[Mapping]:
    mappings = []
    for line in text.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 5:
            continue
        lo, _, hi = fields[0].partition("-")
        mappings.append(Mapping(int(lo, 16), int(hi, 16), fields[1], fields[5].strip() if len(fields) > 5 else ""))
    return mappings


def select_mappings(mappings: list[Mapping], selector: str) -> list[Mapping]:
    """Mappings named by a selector: ``[heap]``, ``[stack]``, ``anon``, a path or path glob.

    Special kernel mappings ([vdso], [vvar], [vsyscall]) are never selected:
    their pages cannot move.
    """
    movable = [m for m in mappings if m.path not in ("[vdso]", "[vvar]", "[vsyscall]")]
    if selector == "anon":
        return [m for m in movable if m.is_anon]
    if selector == "all":
        return movable
    exact = [m for m in movable if m.path == selector]
    if exact or not any(ch in selector for ch in "*?["):
        return exact  # "[heap]" is a name, not a glob character class
    return [m for m in movable if fnmatch.fnmatchcase(m.path, selector)]


_RANGE = re.compile(r"^(0x)?([0-9a-fA-F]+)-(0x)?([0-9a-fA-F]+)$")


def is_range(text: str) -> bool:
    return _RANGE.match(text.strip()) is not None


def parse_range(text: str) -> tuple[int, int]:
    """``START-END`` in hex (``0x`` optional), END exclusive, as /proc/PID/maps writes it."""
    m = _RANGE.match(text.strip())
    if not m:
        raise InvalidArgument(f"bad address range {text!r}: expected START-END in hex, e.g. 7f00a000-7f00c000")
    start, end = int(m.group(2), 16), int(m.group(4), 16)
    if end <= start:
        raise InvalidArgument(f"bad address range {text!r}: end must be above start")
    return start, end


_NODE_COUNT = re.compile(r"\bN(\d+)=(\d+)")
_PAGESIZE = re.compile(r"\bkernelpagesize_kB=(\d+)")


def parse_numa_maps(text: str) -> list[tuple[int, dict[int, int]]]:
    """Per mapping start address: bytes resident on each node."""
    out = []
    for line in text.splitlines():
        addr, _, rest = line.partition(" ")
        if not addr:
            continue
        size_kb = _PAGESIZE.search(rest)
        page = int(size_kb.group(1)) * 1024 if size_kb else 4096
        per_node: dict[int, int] = {}
        for node, pages in _NODE_COUNT.findall(rest):
            per_node[int(node)] = per_node.get(int(node), 0) + int(pages) * page
        out.append((int(addr, 16), per_node))
    return out


def parse_smaps_huge(text: str) -> dict[int, int]:
    """AnonHugePages bytes per mapping start address."""
    out: dict[int, int] = {}
    current = None
    for line in text.splitlines():
        head = line.split(None, 1)[0] if line else ""
        if "-" in head and not head.endswith(":"):
            current = int(head.split("-")[0], 16)
        elif head == "AnonHugePages:" and current is not None:
            out[current] = int(line.split()[1]) * 1024
    return out


def _read(pid: int, name: str, proc_root: str) -> str:
    try:
        return (Path(proc_root) / str(pid) / name).read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(f"process {pid} is gone", errno=errno.ESRCH) from None
    except PermissionError:
        raise PermissionDenied(f"reading /proc/{pid}/{name}", capability=CAPABILITY_FOR["read_maps"]) from None


def read_maps(pid: int, proc_root: str = "/proc") -> list[Mapping]:
    return parse_maps(_read(pid, "maps", proc_root))


def read_numa_maps(pid: int, proc_root: str = "/proc") -> list[tuple[int, dict[int, int]]]:
    return parse_numa_maps(_read(pid, "numa_maps", proc_root))


def read_huge_bytes(pid: int, proc_root: str = "/proc") -> dict[int, int]:
    return parse_smaps_huge(_read(pid, "smaps", proc_root))


def process_residency(pid: int, proc_root: str = "/proc") -> dict[int, int]:
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


def split_selectors(memory) -> tuple[list[tuple[int, int]], list[str]]:
    """A rule's ``memory`` ("all" or selectors) as (explicit ranges, mapping selectors)."""
    selectors = ["all"] if memory in ("all", None) else list(memory)
    return ([parse_range(s) for s in selectors if is_range(s)],
            [s for s in selectors if not is_range(s)])


def selected_mappings(maps: list[Mapping], selectors: list[str]) -> list[Mapping]:
    """The mappings any of ``selectors`` names, each once, in address order."""
    chosen = {m.start: m for selector in selectors for m in select_mappings(maps, selector)}
    return [chosen[start] for start in sorted(chosen)]


def resolve_memory(pid: int, memory, proc_root: str = "/proc") -> list[tuple[int, int]]:
    """Address ranges of ``pid`` named by a rule's ``memory`` ("all" or selectors)."""
    explicit, named = split_selectors(memory)
    ranges = list(explicit)
    if named:
        ranges += [(m.start, m.end) for m in selected_mappings(read_maps(pid, proc_root), named)]
    return sorted(ranges)
