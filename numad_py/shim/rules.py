"""The rules file: which programs' children the shim places, compiled from the daemon's rules.

Text, read by the shim's constructor when no ``NUMAD_SHIM_STRATEGY`` is set
(format: ``cext/preload/numad_shim.h`` and docs/shim.md).  Programs are
named by fnmatch(3) globs over comm and exe (see :mod:`.patterns`); a rule
whose regex has no exact glob is left out of the file with a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
import logging
import os
from pathlib import Path
import pwd

from .files import replace_atomically
from .gate import publish_gate       # after the text is in place: see gate.py
from .patterns import MAX_ALTERNATIVES, NotExpressible, regex_to_globs

log = logging.getLogger(__name__)

DEFAULT_RULES_PATH = Path("/run/numad-py/shim-rules")
RULES_HEADER = "numad-py-shim-rules 2"     # 2: globs (1 held regexes)
RULES_MAX_BYTES = 65536
RULES_MAX_LINE = 1023          # bytes, without the newline
RULES_MAX_RULES = 64
RULES_MAX_INCLUDES = 64
RULE_ACTIONS = ("none", "fixed", "spread", "least-loaded")

# Criteria of a rule's ``match`` that the shim can check in its constructor.
SHIM_CRITERIA = ("comm", "exe", "user")


def _plain(c: str) -> bool:
    return c.isascii() and c.isprintable()


@dataclass(frozen=True)
class ShimRuleLine:
    """One ``rule`` line of the rules file."""

    name: str
    comm: str = ""               # fnmatch(3) glob; "" matches any
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


def _globs(pattern: str | None) -> list[str]:
    return [""] if pattern is None else regex_to_globs(pattern)


def compile_shim_rules(
    rules: Sequence,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    table_path: str | os.PathLike | None = None,
    uid_of: Callable[[str | int], int | None] = _uid_of,
) -> ShimRules:
    """Turn the daemon's rules (config ``Rule`` objects, in order) into rules-file lines.

    First match wins, in the daemon and in the shim, so every rule up to
    the last one with ``spread_children`` is written: a rule without it
    becomes a ``none`` line (a program it claims keeps its children where
    they are).  A regex with ``|`` becomes one line per alternative, in
    order.  The shim sees comm, exe and the real uid; other criteria
    (cmdline, cgroup, unit, min_rss) it cannot check, so:

    * a spreading rule with such a criterion is written as ``none`` over
      the criteria the shim can check (its programs' children are NOT spread
      rather than possibly the wrong programs' children);
    * a non-spreading rule with ONLY such criteria is left out (else it
      would stop every program); one with comm/exe/user is written as
      ``none`` over those;
    * a comm/exe regex with no exact glob (:mod:`.patterns`) drops its rule
      (and, for ``daemon.exclude``/``include``, every spreading line, to
      stay safe).

    Each case is reported in ``problems``.
    """
    out = ShimRules(table=None if table_path is None else str(table_path))
    last = max((i for i, r in enumerate(rules) if getattr(r, "spread_children", None)), default=-1)
    if last < 0:
        return out
    for pattern in include:
        try:
            out.includes += regex_to_globs(pattern)
        except NotExpressible as exc:
            out.problems.append(("daemon.include", f"{pattern!r}: {exc}; left out (stricter)"))
    if include and not out.includes:
        out.problems.append(("daemon.include", "no pattern expressible: no children are spread"))
        return out
    if len(out.includes) > RULES_MAX_INCLUDES:
        out.problems.append(("daemon.include", f"more than {RULES_MAX_INCLUDES} globs; rest left out"))
        del out.includes[RULES_MAX_INCLUDES:]
    for i, pattern in enumerate(exclude):
        try:
            out.lines += [ShimRuleLine(name=f"daemon.exclude[{i}]", comm=g) for g in regex_to_globs(pattern)]
        except NotExpressible as exc:
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
            pairs = [(c, e) for c in _globs(match.comm) for e in _globs(match.exe)]
        except NotExpressible as exc:
            out.problems.append((name, f"comm/exe regex not expressible for the shim ({exc}); rule left out"))
            continue
        if len(pairs) > MAX_ALTERNATIVES:
            out.problems.append((name, f"more than {MAX_ALTERNATIVES} comm x exe alternatives; rule left out"))
            continue
        uid = None
        if match.user is not None:
            uid = uid_of(match.user)
            if uid is None:
                out.problems.append((name, f"unknown user {match.user!r}: the rule matches nothing; left out"))
                continue
        if pairs == [("", "")] and uid is None:
            if spread:   # cannot happen for a valid rule without blind criteria
                out.problems.append((name, f"the shim cannot check {', '.join(blind)}: children not spread"))
            else:
                out.problems.append((name, f"the shim cannot check {', '.join(blind)}; rule left out"))
            continue
        if not spread and blind:
            pending[len(out.lines)] = (name, f"the shim cannot check {', '.join(blind)}: treated as "
                                             "matching (programs it may claim keep their children)")
        if spread and blind:
            out.problems.append((name, f"the shim cannot check {', '.join(blind)}: its programs' "
                                       "children are not spread"))
        places = bool(spread) and not blind
        lines = [ShimRuleLine(name=name, comm=c, exe=e, uid=uid,
                              action="spread" if places else "none", nodes=spread if places else "-",
                              cpus=places and bool(rule.cpus)) for c, e in pairs]
        if any(len(line.encode().encode()) > RULES_MAX_LINE for line in lines):
            out.problems.append((name, f"line longer than {RULES_MAX_LINE} bytes; rule left out"))
            continue
        out.lines += lines
    if len(out.lines) > RULES_MAX_RULES:
        out.problems.append(("rules", f"more than {RULES_MAX_RULES} lines; the rest left out"))
        del out.lines[RULES_MAX_RULES:]
    while out.lines and out.lines[-1].action == "none":
        out.lines.pop()       # nothing after them spreads: they change nothing
    out.problems += [problem for i, problem in sorted(pending.items()) if i < len(out.lines)]
    if not out.lines:
        out.includes.clear()
    return out


def encode_shim_rules(rules: ShimRules | Sequence, **kwargs) -> str:
    """The rules file's text for these config rules (see :func:`compile_shim_rules`). Pure."""
    compiled = rules if isinstance(rules, ShimRules) else compile_shim_rules(rules, **kwargs)
    lines = [RULES_HEADER,
             "# written by numad-py; first matching rule line wins. Format: docs/shim.md"]
    if compiled.table and "\t" not in compiled.table and "\n" not in compiled.table:
        lines.append(f"table\t{compiled.table}")
    lines += [f"include\t{glob}" for glob in compiled.includes]
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

    Called by the daemon on the first scan after start or a reload, and when a scan finds
    the files changed or a minute passed (``daemon.publish.ShimRulesPublisher``).  Atomic (temp
    file + rename, mode 0644); unchanged content is not rewritten.  The gate
    (:mod:`.gate`, ``PATH.gate``) is written after it.  Rules the
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
        unchanged = not path.is_symlink() and path.read_bytes() == data
    except OSError:
        unchanged = False
    if not unchanged:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, data)
    publish_gate(path, [(line.uid, line.comm, line.exe) for line in compiled.lines if line.action != "none"])
    return compiled.placing


