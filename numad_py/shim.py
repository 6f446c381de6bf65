"""The fork-time placement shim: locate it, publish its node table, launch under it.

The shim (``cext/preload/*.c``, built as ``numad_py/_preload.<abi>.so``) is an
LD_PRELOAD library that sets the node a child will allocate on *before*
``fork``/``vfork``/``posix_spawn`` create it.  It is configured only through
environment variables, read once when it loads:

====================  ====================================================
``NUMAD_SHIM_STRATEGY``  ``fixed`` | ``spread`` | ``least-loaded`` (unset: dormant)
``NUMAD_SHIM_NODES``     node list (``1``, ``1-3``); ``fixed`` takes exactly one
``NUMAD_SHIM_MODE``      ``preferred`` (default) | ``bind`` | ``interleave`` | ``preferred-many``
``NUMAD_SHIM_CPUS``      ``1``: pin each child to its node's CPUs
``NUMAD_SHIM_ROOT``      pid of the one process that places its children
                         (``exec`` sets it to its own pid, which survives exec);
                         descendants inherit their node from the kernel
``NUMAD_SHIM_TABLE``     node table path (default ``/run/numad-py/node-table``)
``NUMAD_SHIM_CHILD_BYTES`` least-loaded: local debit per placed child (64 MiB)
``NUMAD_SHIM_STATS``     optional counters file shared by the whole tree
``NUMAD_SHIM_SYSFS``     sysfs root for node cpulists (tests)
``NUMAD_SHIM_DISABLE``   ``1``: dormant
``NUMAD_SHIM_RULES``     rules file (default ``/run/numad-py/shim-rules``), read
                         only when ``NUMAD_SHIM_STRATEGY`` is unset
====================  ====================================================

Without ``NUMAD_SHIM_STRATEGY`` the shim looks itself up in the **rules file**
the daemon publishes (:func:`publish_shim_rules`): the rules with
``spread_children`` name the programs whose children are spread.  See
``docs/shim.md``.

The binary layouts of the node table and the stats file are documented in
``cext/preload/numad_shim.h``; :func:`encode_table` / :func:`decode_table`
are their Python twins.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import logging
import pwd
import re
import mmap
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Mapping, Sequence

from .nodes import format_nodes

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_TABLE_PATH = Path("/run/numad-py/node-table")
DEFAULT_RULES_PATH = Path("/run/numad-py/shim-rules")

log = logging.getLogger(__name__)

TABLE_MAGIC = b"NUMADTB1"
TABLE_VERSION = 1
TABLE_HEADER = struct.Struct("=8sIIIIQQQQII")  # 64 bytes, see numad_shim.h
TABLE_ENTRY = struct.Struct("=QQIIQ")          # 32 bytes
TABLE_MAX_ENTRIES = 1024
TABLE_SUPERSEDED = 0x1
ENTRY_PRESENT = 0x1
ENTRY_HAS_CPUS = 0x2
_OFF_SEQ, _OFF_GEN, _OFF_UPDATED, _OFF_EXPIRES, _OFF_FLAGS = 24, 32, 40, 48, 56

STATS_MAGIC = b"NUMADST1"
STATS_HEADER = struct.Struct("=8sII")
# Order of enum numad_counter in numad_shim.h.
COUNTERS = (
    "calls", "placed", "passthrough", "fallback",
    "fallback_config", "fallback_no_table", "fallback_stale_table", "fallback_table_busy",
    "fallback_no_candidate", "fallback_get_policy", "fallback_set_policy",
    "restore_failed", "pin_failed", "vfork_unplaced", "rules_invalid", "rules_matched",
)
STATS_SIZE = STATS_HEADER.size + 8 * len(COUNTERS)

STRATEGIES = ("fixed", "spread", "least-loaded")
SHIM_MODES = ("preferred", "bind", "interleave", "preferred-many")
ENV_PREFIX = "NUMAD_SHIM_"

assert TABLE_HEADER.size == 64 and TABLE_ENTRY.size == 32


class ShimError(Exception):
    """The shim cannot be used as asked (not built, bad node, bad mode)."""


# --- locating the library ----------------------------------------------------

def shim_path() -> Path:
    """Path of the built shim (``numad_py/_preload.<abi tag>.so``)."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = PACKAGE_DIR / f"_preload{suffix}"
        if candidate.is_file():
            return candidate
    found = sorted(PACKAGE_DIR.glob("_preload*.so"))
    if found:
        return found[0]
    raise ShimError(
        f"the LD_PRELOAD shim is not built (no _preload*.so in {PACKAGE_DIR}); "
        "run `pip install -e .` or `python setup.py build_ext --inplace`"
    )


# --- the node table ------------------------------------------------------------

@dataclass(frozen=True)
class TableNode:
    free_bytes: int
    total_bytes: int = 0
    present: bool = True
    has_cpus: bool = True


@dataclass
class NodeTable:
    nodes: dict[int, TableNode]
    generation: int = 0
    seq: int = 0
    updated_ns: int = 0
    expires_ns: int = 0
    flags: int = 0
    nr_entries: int = field(default=0)

    @property
    def superseded(self) -> bool:
        return bool(self.flags & TABLE_SUPERSEDED)


def encode_table(nodes: Mapping[int, TableNode], *, generation: int, updated_ns: int,
                 expires_ns: int = 0, seq: int = 0, flags: int = 0) -> bytes:
    """The table file's bytes: entry i describes node i; absent nodes are not PRESENT."""
    nr = (max(nodes) + 1) if nodes else 0
    if nr > TABLE_MAX_ENTRIES or any(n < 0 for n in nodes):
        raise ValueError(f"node ids must be 0-{TABLE_MAX_ENTRIES - 1}")
    out = bytearray(TABLE_HEADER.pack(TABLE_MAGIC, TABLE_VERSION, TABLE_HEADER.size,
                                      TABLE_ENTRY.size, nr, seq, generation, updated_ns,
                                      expires_ns, flags, 0))
    for i in range(nr):
        n = nodes.get(i)
        if n is None:
            out += TABLE_ENTRY.pack(0, 0, 0, 0, 0)
        else:
            eflags = (ENTRY_PRESENT if n.present else 0) | (ENTRY_HAS_CPUS if n.has_cpus else 0)
            out += TABLE_ENTRY.pack(max(0, int(n.free_bytes)), max(0, int(n.total_bytes)), eflags, 0, 0)
    return bytes(out)


def decode_table(data: bytes) -> NodeTable:
    if len(data) < TABLE_HEADER.size:
        raise ValueError("node table: shorter than its header")
    (magic, version, hsize, esize, nr, seq, gen, updated, expires, flags,
     _) = TABLE_HEADER.unpack_from(data)
    if magic != TABLE_MAGIC or version != TABLE_VERSION:
        raise ValueError(f"node table: bad magic/version {magic!r}/{version}")
    if hsize != TABLE_HEADER.size or esize != TABLE_ENTRY.size or nr > TABLE_MAX_ENTRIES:
        raise ValueError("node table: unexpected layout")
    if len(data) < hsize + nr * esize:
        raise ValueError("node table: truncated")
    nodes = {}
    for i in range(nr):
        free, total, eflags, _, _ = TABLE_ENTRY.unpack_from(data, hsize + i * esize)
        if eflags & ENTRY_PRESENT:
            nodes[i] = TableNode(free, total, True, bool(eflags & ENTRY_HAS_CPUS))
    return NodeTable(nodes=nodes, generation=gen, seq=seq, updated_ns=updated,
                     expires_ns=expires, flags=flags, nr_entries=nr)


def read_node_table(path: str | os.PathLike = DEFAULT_TABLE_PATH) -> NodeTable:
    """Read a consistent snapshot (retries while the seqlock is odd or moves)."""
    data = Path(path).read_bytes()
    for _ in range(100):
        table = decode_table(data)
        if table.seq % 2 == 0:
            return table
        time.sleep(0.001)
        data = Path(path).read_bytes()
    raise ValueError(f"node table {path}: writer never finished (seq stays odd)")


def _store_u64(mm: mmap.mmap, offset: int, value: int) -> None:
    # One aligned 8-byte store (ctypes assigns through a single machine word).
    ctypes.c_uint64.from_buffer(mm, offset).value = value


def publish_node_table(
    path: str | os.PathLike,
    topology_free_bytes_by_node: Mapping[int, int],
    *,
    total_bytes_by_node: Mapping[int, int] | None = None,
    cpu_nodes: Iterable[int] | None = None,
    valid_for: float | None = None,
) -> int:
    """Publish free memory per node for the shim's least-loaded choice; returns the generation.

    Called by the daemon each scan.  ``valid_for`` (seconds) sets the expiry
    (e.g. three scan intervals): a table the daemon stopped refreshing is
    then ignored by the shim (counted fallback), not trusted forever.
    Same node count as the existing file: seqlock update in place (mapped
    readers see it at once).  Otherwise: temp file + rename, and the old file
    is marked SUPERSEDED so mapped readers re-open the path.
    """
    path = Path(path)
    cpu_set = None if cpu_nodes is None else frozenset(cpu_nodes)
    nodes = {
        int(n): TableNode(
            free_bytes=int(free),
            total_bytes=int((total_bytes_by_node or {}).get(n, 0)),
            present=True,
            has_cpus=True if cpu_set is None else n in cpu_set,
        )
        for n, free in topology_free_bytes_by_node.items()
    }
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    expires = now + int(valid_for * 1e9) if valid_for else 0
    nr = (max(nodes) + 1) if nodes else 0

    old_generation = 0
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = None
    if fd is not None:
        try:
            size = os.fstat(fd).st_size
            raw = os.pread(fd, TABLE_HEADER.size, 0)
            head = TABLE_HEADER.unpack(raw) if len(raw) == TABLE_HEADER.size else None
            if head is not None and head[0] == TABLE_MAGIC:
                old_generation = head[6]
            if (head is not None and head[0] == TABLE_MAGIC and head[1] == TABLE_VERSION
                    and head[4] == nr and not head[9] & TABLE_SUPERSEDED
                    and size == TABLE_HEADER.size + nr * TABLE_ENTRY.size):
                with mmap.mmap(fd, size) as mm:
                    generation = TABLE_HEADER.unpack_from(mm)[6] + 1
                    seq = TABLE_HEADER.unpack_from(mm)[5] | 1
                    _store_u64(mm, _OFF_SEQ, seq)          # odd: writing
                    body = encode_table(nodes, generation=generation, updated_ns=now,
                                        expires_ns=expires)
                    mm[TABLE_HEADER.size:size] = body[TABLE_HEADER.size:]
                    _store_u64(mm, _OFF_GEN, generation)
                    _store_u64(mm, _OFF_UPDATED, now)
                    _store_u64(mm, _OFF_EXPIRES, expires)
                    _store_u64(mm, _OFF_SEQ, seq + 1)      # even: done
                    return generation
        finally:
            os.close(fd)

    generation = old_generation + 1
    data = encode_table(nodes, generation=generation, updated_ns=now, expires_ns=expires)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fchmod(f.fileno(), 0o644)
    old_fd = None
    try:
        old_fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        pass
    os.replace(tmp, path)
    if old_fd is not None:  # tell readers that mapped the old file to re-open the path
        try:
            if os.fstat(old_fd).st_size >= TABLE_HEADER.size:
                with mmap.mmap(old_fd, TABLE_HEADER.size) as mm:
                    if mm[:8] == TABLE_MAGIC:
                        ctypes.c_uint32.from_buffer(mm, _OFF_FLAGS).value |= TABLE_SUPERSEDED
        finally:
            os.close(old_fd)
    return generation


# --- the rules file: which programs' children are placed -------------------------

RULES_HEADER = "numad-py-shim-rules 1"
RULES_MAX_BYTES = 65536
RULES_MAX_LINE = 1023          # bytes, without the newline
RULES_MAX_RULES = 64
RULES_MAX_INCLUDES = 64
RULE_ACTIONS = ("none", "fixed", "spread", "least-loaded")

# Criteria of a rule's ``match`` that the shim can check in its constructor.
SHIM_CRITERIA = ("comm", "exe", "user")


class UntranslatableRegex(ValueError):
    """A Python regex with no exact POSIX ERE equivalent (lookaround, \\b, flags...)."""


_ERE_SPECIAL = set(".[]()*+?{}|^$\\")
_CLASS_ESCAPES = {"d": "0-9", "w": "[:alnum:]_", "s": "[:space:]"}
_NEG_ESCAPES = {"D": "d", "W": "w", "S": "s"}
_BRACE = re.compile(r"\{(\d*)(,?)(\d*)\}")
_RE_DUP_MAX = 255              # glibc allows 32767; stay well inside it


def _plain(c: str) -> bool:
    return c.isascii() and c.isprintable()


def _lit(c: str) -> str:
    if not _plain(c):
        raise UntranslatableRegex(f"character {c!r} (only printable ASCII is translated)")
    if c in "{}":
        return f"[{c}]"
    return "\\" + c if c in _ERE_SPECIAL else c


def _bracket(p: str, i: int) -> tuple[int, str]:
    """Translate the character class starting at p[i] == '['; returns (next index, ERE)."""
    n = len(p)
    j = i + 1
    neg = j < n and p[j] == "^"
    if neg:
        j += 1
    chars: set[str] = set()
    ranges: list[str] = []
    classes: list[str] = []
    first = True

    def atom(k: int) -> tuple[int, str | None, str | None]:
        """(next, literal char or None, class text or None)"""
        if k >= n:
            raise UntranslatableRegex("unterminated character class")
        c = p[k]
        if c == "\\":
            if k + 1 >= n:
                raise UntranslatableRegex("trailing backslash")
            e = p[k + 1]
            if e in _CLASS_ESCAPES:
                return k + 2, None, _CLASS_ESCAPES[e]
            if e.isalnum() or not _plain(e):
                raise UntranslatableRegex(f"escape \\{e} in a character class")
            return k + 2, e, None
        if c == "[" and p[k + 1:k + 2] in (":", ".", "="):
            raise UntranslatableRegex("'[:' in a character class")
        if not _plain(c):
            raise UntranslatableRegex(f"character {c!r} (only printable ASCII is translated)")
        return k + 1, c, None

    while True:
        if j >= n:
            raise UntranslatableRegex("unterminated character class")
        if p[j] == "]" and not first:
            j += 1
            break
        first = False
        j, lo, cls = atom(j)
        if cls is not None:
            classes.append(cls)
            continue
        if j + 1 < n and p[j] == "-" and p[j + 1] != "]":
            j, hi, cls = atom(j + 1)
            if cls is not None or lo in "]-^[\\" or hi in "]-^[\\":
                raise UntranslatableRegex("character range with a special endpoint")
            ranges.append(f"{lo}-{hi}")
        else:
            chars.add(lo)
    if not neg and not ranges and not classes and len(chars) == 1:
        return j, _lit(next(iter(chars)))
    body = ("]" if "]" in chars else "") + "".join(ranges) + "".join(classes)
    body += "".join(sorted(chars - set("]^-[")))
    body += "[" if "[" in chars else ""
    if "^" in chars:
        body += "^"
    if "-" in chars:
        body = "-" + body if body.startswith("^") else body + "-"
    return j, "[" + ("^" if neg else "") + body + "]"


def regex_to_ere(pattern: str) -> str:
    """The POSIX ERE (anchored) matching exactly what ``re.fullmatch(pattern, s)`` matches.

    Translates the common subset (literals, ``.``, classes, ``\\d \\w \\s``,
    groups incl. ``(?:)`` / ``(?P<n>)``, alternation, greedy and lazy
    quantifiers, which accept the same strings under a full match); raises
    :class:`UntranslatableRegex` for the rest (lookaround, ``\\b``, back
    references, inline flags, possessive quantifiers, non-ASCII).
    """
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        re.compile(pattern)
    out: list[str] = []
    n = len(pattern)
    i = 0
    p = pattern
    while i < n:
        c = p[i]
        if c == "\\":
            if i + 1 >= n:
                raise UntranslatableRegex("trailing backslash")
            e = p[i + 1]
            i += 2
            if e in _CLASS_ESCAPES:
                out.append(f"[{_CLASS_ESCAPES[e]}]")
            elif e in _NEG_ESCAPES:
                out.append(f"[^{_CLASS_ESCAPES[_NEG_ESCAPES[e]]}]")
            elif e == "A":
                out.append("^")
            elif e == "Z":
                out.append("$")
            elif e.isalnum() or not _plain(e):
                raise UntranslatableRegex(f"escape \\{e}")
            else:
                out.append(_lit(e))
        elif c == "[":
            i, text = _bracket(p, i)
            out.append(text)
        elif c == "(":
            if p.startswith("(?:", i):
                out.append("(")
                i += 3
            elif p.startswith("(?P<", i):
                out.append("(")
                i = p.index(">", i) + 1
            elif p.startswith("(?", i):
                raise UntranslatableRegex(f"group {p[i:i + 3]}...")
            else:
                out.append("(")
                i += 1
        elif c in "*+?" or (c == "{" and _BRACE.match(p, i) and _BRACE.match(p, i).group(0) != "{}"
                            and (_BRACE.match(p, i).group(1) or _BRACE.match(p, i).group(3))):
            if c == "{":
                m = _BRACE.match(p, i)
                lo, comma, hi = m.group(1), m.group(2), m.group(3)
                if any(x and int(x) > _RE_DUP_MAX for x in (lo, hi)):
                    raise UntranslatableRegex(f"repeat count above {_RE_DUP_MAX}")
                out.append("{" + (lo or "0") + comma + hi + "}")
                i = m.end()
            else:
                out.append(c)
                i += 1
            if i < n and p[i] == "?":
                i += 1                      # lazy: the same strings match in full
            elif i < n and p[i] == "+":
                raise UntranslatableRegex("possessive quantifier")
        elif c in "|^$.)":
            out.append(c)
            i += 1
        else:
            out.append(_lit(c))
            i += 1
    ere = "^(" + "".join(out) + ")$"
    if not _ere_compiles(ere):
        raise UntranslatableRegex("the C library's regcomp() rejects the translation")
    return ere


_libc = None


def _ere_compiles(ere: str) -> bool:
    """Compile with the same regcomp() the shim uses (REG_EXTENDED | REG_NOSUB)."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None)
            _libc.regcomp.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
            _libc.regfree.argtypes = [ctypes.c_void_p]
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return True
    buf = ctypes.create_string_buffer(256)        # sizeof(regex_t) is 64 on glibc x86-64
    if _libc.regcomp(buf, ere.encode(), 1 | 8) != 0:  # REG_EXTENDED | REG_NOSUB
        return False
    _libc.regfree(buf)
    return True


def ere_fullmatch(ere: str, subject: str) -> bool:
    """Evaluate a rules-file ERE exactly as the shim does (libc regexec); for tests."""
    if not _ere_compiles(ere) or not _libc:
        raise RuntimeError("libc regcomp unavailable")
    buf = ctypes.create_string_buffer(256)
    assert _libc.regcomp(buf, ere.encode(), 1 | 8) == 0
    try:
        return _libc.regexec(buf, subject.encode(), ctypes.c_size_t(0), None, 0) == 0
    finally:
        _libc.regfree(buf)


@dataclass(frozen=True)
class ShimRuleLine:
    """One ``rule`` line of the rules file."""

    name: str
    comm: str = ""               # anchored ERE; "" matches any
    exe: str = ""
    uid: int | None = None
    action: str = "none"         # none | fixed | spread | least-loaded
    nodes: str = "-"
    mode: str = "preferred"
    cpus: bool = False

    def encode(self) -> str:
        return "\t".join(["rule", self.name, self.comm, self.exe,
                          "-" if self.uid is None else str(self.uid), self.action, self.nodes,
                          self.mode, "1" if self.cpus else "0"])


@dataclass
class ShimRules:
    """What the shim will see, plus what could not be expressed (rule name, reason)."""

    lines: list[ShimRuleLine] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)
    table: str | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def placing(self) -> int:
        return sum(1 for line in self.lines if line.action != "none")


def _uid_of(user: str | int) -> int | None:
    if isinstance(user, int) or user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def _safe_name(name: str) -> str:
    text = "".join(c if _plain(c) and c != "\t" else "?" for c in name)
    return text[:100] or "?"


def compile_shim_rules(
    rules: Sequence,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    table_path: str | os.PathLike | None = None,
    uid_of=_uid_of,
) -> ShimRules:
    """Turn the daemon's rules (config ``Rule`` objects, in order) into rules-file lines.

    First match wins, in the daemon and in the shim, so every rule up to
    the last one with ``spread_children`` is written: a rule without it
    becomes a ``none`` line (a program it claims keeps its children where
    they are).  The shim sees comm, exe and the real uid; other criteria
    (cmdline, cgroup, unit, min_rss) it cannot check, so:

    * a spreading rule with such a criterion is written as ``none`` over
      the criteria the shim can check (its programs' children are NOT spread
      rather than possibly the wrong programs' children);
    * a non-spreading rule with ONLY such criteria is left out (else it
      would stop every program); one with comm/exe/user is written as
      ``none`` over those;
    * a regex with no exact ERE translation drops its rule (and, for
      ``daemon.exclude``/``include``, every spreading line, to stay safe).

    Each case is reported in ``problems``.
    """
    out = ShimRules(table=None if table_path is None else str(table_path))
    last = max((i for i, r in enumerate(rules) if getattr(r, "spread_children", None)), default=-1)
    if last < 0:
        return out
    for pattern in include:
        try:
            out.includes.append(regex_to_ere(pattern))
        except UntranslatableRegex as exc:
            out.problems.append(("daemon.include", f"{pattern!r}: {exc}; left out (stricter)"))
    if include and not out.includes:
        out.problems.append(("daemon.include", "no pattern translatable: no children are spread"))
        return out
    if len(out.includes) > RULES_MAX_INCLUDES:
        out.problems.append(("daemon.include", f"more than {RULES_MAX_INCLUDES} patterns; rest left out"))
        del out.includes[RULES_MAX_INCLUDES:]
    for i, pattern in enumerate(exclude):
        try:
            out.lines.append(ShimRuleLine(name=f"daemon.exclude[{i}]", comm=regex_to_ere(pattern)))
        except UntranslatableRegex as exc:
            out.problems.append((f"daemon.exclude[{i}]", f"{pattern!r}: {exc}; no children are spread"))
            out.lines.clear()
            return out

    pending: dict[int, tuple[str, str]] = {}   # reported only if the line is kept
    for i, rule in enumerate(rules[:last + 1]):
        name = _safe_name(rule.name or f"rule[{i}]")
        match = rule.match
        spread = rule.spread_children
        blind = [c for c in type(match).model_fields if c not in SHIM_CRITERIA and getattr(match, c) is not None]
        try:
            comm = regex_to_ere(match.comm) if match.comm is not None else ""
            exe = regex_to_ere(match.exe) if match.exe is not None else ""
        except UntranslatableRegex as exc:
            out.problems.append((name, f"regex not expressible for the shim ({exc}); rule left out"))
            continue
        uid = None
        if match.user is not None:
            uid = uid_of(match.user)
            if uid is None:
                out.problems.append((name, f"unknown user {match.user!r}: the rule matches nothing; left out"))
                continue
        if not comm and not exe and uid is None:
            if spread:   # cannot happen for a valid rule without blind criteria
                out.problems.append((name, f"the shim cannot check {', '.join(blind)}: children not spread"))
            else:
                out.problems.append((name, f"the shim cannot check {', '.join(blind)}; rule left out"))
            continue
        line = ShimRuleLine(name=name, comm=comm, exe=exe, uid=uid)
        if not spread and blind:
            pending[len(out.lines)] = (name, f"the shim cannot check {', '.join(blind)}: treated as "
                                             "matching (programs it may claim keep their children)")
        if spread and blind:
            out.problems.append((name, f"the shim cannot check {', '.join(blind)}: its programs' "
                                       "children are not spread"))
        elif spread:
            line = ShimRuleLine(name=name, comm=comm, exe=exe, uid=uid, action="spread",
                                nodes=spread, mode="preferred", cpus=bool(rule.cpus))
        if len(line.encode().encode()) > RULES_MAX_LINE:
            out.problems.append((name, f"line longer than {RULES_MAX_LINE} bytes; rule left out"))
            continue
        out.lines.append(line)
    if len(out.lines) > RULES_MAX_RULES:
        out.problems.append(("rules", f"more than {RULES_MAX_RULES} lines; the rest left out"))
        del out.lines[RULES_MAX_RULES:]
    while out.lines and out.lines[-1].action == "none":
        out.lines.pop()       # nothing after them spreads: they change nothing
    out.problems += [problem for i, problem in sorted(pending.items()) if i < len(out.lines)]
    if not out.lines:
        out.includes.clear()
    return out


def encode_shim_rules(rules: Sequence, **kwargs) -> str:
    """The rules file's text for these config rules (see :func:`compile_shim_rules`). Pure."""
    compiled = rules if isinstance(rules, ShimRules) else compile_shim_rules(rules, **kwargs)
    lines = [RULES_HEADER,
             "# written by numad-py; first matching rule line wins. Format: docs/shim.md"]
    if compiled.table and "\t" not in compiled.table and "\n" not in compiled.table:
        lines.append(f"table\t{compiled.table}")
    lines += [f"include\t{ere}" for ere in compiled.includes]
    lines += [line.encode() for line in compiled.lines]
    text = "\n".join(lines) + "\n"
    if len(text.encode()) > RULES_MAX_BYTES:  # cannot happen within the line/count bounds
        raise ValueError("shim rules file too large")
    return text


_warned: set[tuple[str, str]] = set()


def publish_shim_rules(
    path: str | os.PathLike,
    rules: Sequence,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    table_path: str | os.PathLike | None = None,
) -> int:
    """Write the rules file the shim reads when it has no env config; returns the
    number of rule lines that place children.

    Called by the daemon at start, each scan and on reload.  Atomic (temp
    file + rename, mode 0644); unchanged content is not rewritten.  Rules the
    shim cannot evaluate are logged once each (a warning).
    """
    compiled = compile_shim_rules(rules, include=include, exclude=exclude, table_path=table_path)
    for problem in compiled.problems:
        if problem not in _warned:
            _warned.add(problem)
            log.warning("shim rules: %s: %s", *problem)
    data = encode_shim_rules(compiled).encode()
    path = Path(path)
    try:
        if path.read_bytes() == data:
            return compiled.placing
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return compiled.placing


# --- counters -----------------------------------------------------------------

def decode_stats(data: bytes) -> dict[str, int]:
    if len(data) < STATS_HEADER.size:
        return {name: 0 for name in COUNTERS}
    magic, _version, nr = STATS_HEADER.unpack_from(data)
    if magic != STATS_MAGIC:
        raise ValueError("shim stats: bad magic")
    nr = min(nr, len(COUNTERS), (len(data) - STATS_HEADER.size) // 8)
    values = struct.unpack_from(f"={nr}Q", data, STATS_HEADER.size)
    out = {name: 0 for name in COUNTERS}
    out.update(zip(COUNTERS, values))
    return {k: v for k, v in out.items() if not k.startswith("reserved")}


def read_stats(path: str | os.PathLike) -> dict[str, int]:
    """Counters of every process that ran with ``NUMAD_SHIM_STATS=path``."""
    return decode_stats(Path(path).read_bytes())


def process_stats() -> dict[str, int] | None:
    """This process's counters if the shim is loaded in it (else None).

    Also ``state`` (0 dormant, 1 placing here, 2 bad config, 3 not the root)
    and ``rule``: the rules-file line that configured it (index), or -1 no
    rules file, -2 invalid file, -3 no line matched, -4 not in the include
    list, -5 configured by NUMAD_SHIM_* env vars.
    """
    try:
        lib = ctypes.CDLL(str(shim_path()), mode=os.RTLD_NOLOAD)
    except (OSError, ShimError):
        return None
    arr = (ctypes.c_uint64 * len(COUNTERS))()
    n = lib.numad_shim_counters(arr, len(COUNTERS))
    out = dict(zip(COUNTERS, list(arr)[:n]))
    out["state"] = lib.numad_shim_state()
    if hasattr(lib, "numad_shim_rule"):
        out["rule"] = lib.numad_shim_rule(None, 0)
    return {k: v for k, v in out.items() if not k.startswith("reserved")}


# --- environment and exec -----------------------------------------------------

def build_env(
    base: Mapping[str, str],
    *,
    strategy: str,
    nodes: Iterable[int],
    mode: str = "preferred",
    cpus: bool = False,
    root_pid: int | None = None,
    table_path: str | os.PathLike | None = None,
    stats_path: str | os.PathLike | None = None,
    library: str | os.PathLike | None = None,
) -> dict[str, str]:
    """``base`` plus the shim preloaded (first in LD_PRELOAD) and configured. Pure."""
    if strategy not in STRATEGIES:
        raise ShimError(f"unknown strategy {strategy!r} (one of: {', '.join(STRATEGIES)})")
    if mode not in SHIM_MODES:
        raise ShimError(f"the shim supports modes {', '.join(SHIM_MODES)}, not {mode!r}")
    node_set = frozenset(nodes)
    if not node_set:
        raise ShimError("empty node list")
    if strategy == "fixed" and len(node_set) != 1:
        raise ShimError("fixed placement takes exactly one node")
    env = {k: v for k, v in base.items() if not k.startswith(ENV_PREFIX)}
    lib = str(library if library is not None else shim_path())
    existing = [p for p in env.get("LD_PRELOAD", "").replace(":", " ").split() if p and p != lib]
    env["LD_PRELOAD"] = " ".join([lib, *existing])
    env["NUMAD_SHIM_STRATEGY"] = strategy
    env["NUMAD_SHIM_NODES"] = format_nodes(node_set)
    env["NUMAD_SHIM_MODE"] = mode
    if cpus:
        env["NUMAD_SHIM_CPUS"] = "1"
    if root_pid is not None:
        env["NUMAD_SHIM_ROOT"] = str(root_pid)
    if table_path is not None:
        env["NUMAD_SHIM_TABLE"] = str(table_path)
    if stats_path is not None:
        env["NUMAD_SHIM_STATS"] = str(stats_path)
    return env


def _validate(nodes: frozenset[int], *, cpus: bool, mode: str, sys_root: str = "/sys") -> None:
    from .numa import Mode, check_nodes, supports
    from .topology import read_topology

    if mode not in SHIM_MODES:
        raise ShimError(f"unknown mode {mode!r} for exec (one of: {', '.join(SHIM_MODES)})")
    try:
        check_nodes(nodes, sys_root=sys_root)
    except Exception as exc:  # InvalidNode with the names in its message
        raise ShimError(str(exc)) from None
    if not supports(Mode.parse(mode)):
        raise ShimError(f"memory policy {mode} is unsupported on this kernel")
    if cpus:
        topo = read_topology(sys_root)
        cpuless = sorted(n for n in nodes if not topo.node(n).cpus)
        if cpuless:
            raise ShimError(f"--cpus: node {format_nodes(cpuless)} has no CPUs (memory-only)")


def exec_main(
    argv_after_dashdash: Sequence[str],
    *,
    node: int | None,
    spread: frozenset[int] | None,
    least_loaded: frozenset[int] | None,
    cpus: bool,
    mode: str = "preferred",
    table_path: str | os.PathLike | None = None,
    stats_path: str | os.PathLike | None = None,
) -> int:
    """``numad-py exec``: exec CMD with the shim preloaded; returns only on error.

    ``--node N``: the program itself gets the policy (and CPUs) of node N
    before exec (policy survives exec), and so do all its children.
    ``--spread``/``--least-loaded``: the program's direct children are placed
    (round-robin / most free memory); deeper descendants stay on their
    parent's node.
    """
    prog = "numad-py exec"
    argv = list(argv_after_dashdash)
    if not argv:
        print(f"{prog}: no command given (usage: numad-py exec --node N -- CMD ARGS...)", file=sys.stderr)
        return 2
    chosen = [(name, val) for name, val in (("--node", node), ("--spread", spread),
                                            ("--least-loaded", least_loaded)) if val is not None]
    if len(chosen) != 1:
        print(f"{prog}: give exactly one of --node, --spread, --least-loaded", file=sys.stderr)
        return 2
    if node is not None:
        strategy, nodes = "fixed", frozenset([node])
    elif spread is not None:
        strategy, nodes = "spread", frozenset(spread)
    else:
        strategy, nodes = "least-loaded", frozenset(least_loaded)
    try:
        _validate(nodes, cpus=cpus, mode=mode)
        env = build_env(os.environ, strategy=strategy, nodes=nodes, mode=mode, cpus=cpus,
                        root_pid=os.getpid(), table_path=table_path, stats_path=stats_path)
        if strategy == "fixed":
            from .numa import Mode, set_mempolicy
            from .topology import read_topology

            set_mempolicy(Mode.parse(mode), nodes)
            if cpus:
                os.sched_setaffinity(0, read_topology().node(node).cpus)
    except ShimError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # NumaError from set_mempolicy, OSError from affinity
        print(f"{prog}: cannot apply node {node}: {exc}", file=sys.stderr)
        return 1
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        print(f"{prog}: {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 1  # not reached


__all__ = [
    "COUNTERS", "DEFAULT_RULES_PATH", "DEFAULT_TABLE_PATH", "NodeTable", "ShimError", "ShimRuleLine",
    "ShimRules", "TableNode", "UntranslatableRegex", "build_env", "compile_shim_rules",
    "decode_stats", "decode_table", "encode_shim_rules", "encode_table", "exec_main",
    "process_stats", "publish_node_table", "publish_shim_rules", "read_node_table", "read_stats",
    "regex_to_ere", "shim_path",
]
