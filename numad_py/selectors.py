"""The address and mapping selector grammar, PURE (no OS module, nothing read).

What config rules, socket requests and the CLI write to name a process's
memory (a pid is :func:`numad_py.units.parse_pid`):

* an address range ``START-END`` in hex (``0x`` optional), END exclusive, as
  /proc/PID/maps writes it;
* a mapping name: ``[heap]``, ``[stack]``, ``anon``, ``all``, an absolute
  path, or a path glob (``/dev/shm/*``).

Matching works on :class:`Mapping` values (parsed from /proc/PID/maps by
:func:`parse_maps`), so every rule here is tested on literal text.  Digits are
ASCII only: ``int()`` also takes "１２" and "١٢", which no kernel file writes.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InvalidArgument

ALL = "all"
ANON = "anon"
# Mapping names a selector may use verbatim; others ([vdso], [vvar]) cannot move.
NAMED_MAPPINGS = ("[heap]", "[stack]", ANON)
UNMOVABLE = ("[vdso]", "[vvar]", "[vsyscall]")
MAX_ADDRESS = (1 << 64) - 1
_HEX = "[0-9a-fA-F]"
_RANGE = re.compile(rf"^(0x)?({_HEX}{{1,16}})-(0x)?({_HEX}{{1,16}})$")


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
        return self.path or ANON


def parse_maps(text: str) -> list[Mapping]:
    """The mappings of a /proc/PID/maps text; lines that are not mappings are skipped."""
    mappings = []
    for line in text.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 5:
            continue
        lo, sep, hi = fields[0].partition("-")
        if not sep or not re.fullmatch(f"{_HEX}+", lo + hi):
            continue
        path = fields[5].strip() if len(fields) > 5 else ""
        mappings.append(Mapping(int(lo, 16), int(hi, 16), fields[1], path))
    return mappings


# --- address ranges ------------------------------------------------------------

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


# --- mapping names ---------------------------------------------------------------

def check_selector(selector: str) -> str:
    """Refuse what is neither a mapping name, a path (glob) nor a range; return it unchanged."""
    if not isinstance(selector, str) or not selector.strip():
        raise InvalidArgument("empty memory selector: name a mapping (\"[heap]\", \"anon\", a path) or a range")
    if selector in NAMED_MAPPINGS or selector.startswith("/"):
        return selector
    if "-" not in selector:
        raise InvalidArgument(
            f"unknown memory selector {selector!r}: expected \"[heap]\", \"[stack]\", \"anon\", "
            "an absolute path or glob (\"/dev/shm/*\"), or a range \"0x1000-0x2000\""
        )
    parse_range(selector)  # raises InvalidArgument with the reason
    return selector


def select_mappings(mappings: Iterable[Mapping], selector: str) -> list[Mapping]:
    """Mappings named by a selector: ``[heap]``, ``[stack]``, ``anon``, ``all``, a path or path glob.

    Special kernel mappings ([vdso], [vvar], [vsyscall]) are never selected:
    their pages cannot move.  An empty selector is an error, never "everything".
    """
    if not selector:
        raise InvalidArgument("empty mapping name: give \"[heap]\", \"anon\", \"all\", a path or a glob")
    movable = [m for m in mappings if m.path not in UNMOVABLE]
    if selector == ANON:
        return [m for m in movable if m.is_anon]
    if selector == ALL:
        return movable
    exact = [m for m in movable if m.path == selector]
    if exact or not any(ch in selector for ch in "*?["):
        return exact  # "[heap]" is a name, not a glob character class
    return [m for m in movable if fnmatch.fnmatchcase(m.path, selector)]


def split_selectors(memory: str | Iterable[str] | None) -> tuple[list[tuple[int, int]], list[str]]:
    """A rule's ``memory`` ("all" or selectors) as (explicit ranges, mapping selectors)."""
    selectors = [ALL] if memory is None or memory == ALL else list(memory)
    return ([parse_range(s) for s in selectors if is_range(s)],
            [s for s in selectors if not is_range(s)])


def selected_mappings(maps: Iterable[Mapping], selectors: Iterable[str]) -> list[Mapping]:
    """The mappings any of ``selectors`` names, each once, in address order."""
    maps = list(maps)
    chosen = {m.start: m for selector in selectors for m in select_mappings(maps, selector)}
    return [chosen[start] for start in sorted(chosen)]


def ranges_of(maps: Iterable[Mapping], memory: str | Iterable[str] | None) -> list[tuple[int, int]]:
    """Address ranges named by a rule's ``memory`` ("all" or selectors) in ``maps``."""
    explicit, named = split_selectors(memory)
    ranges = list(explicit)
    if named:
        ranges += [(m.start, m.end) for m in selected_mappings(maps, named)]
    return sorted(ranges)
