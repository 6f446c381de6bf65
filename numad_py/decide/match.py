"""Which rule applies to a process: the first matching rule wins.

Works on anything with the :class:`ProcessFacts` attributes, so the sense
layer can pass a lazy object that reads ``exe``/``cmdline`` only when a
rule asks; criteria are checked cheapest first to keep that rare.
"""

from __future__ import annotations

import fnmatch
import re
from functools import lru_cache
from typing import Protocol
from collections.abc import Iterable, Sequence

from ..config.models import DaemonSettings, Match, Rule

# systemd unit suffixes that can name a cgroup.
UNIT_SUFFIXES = (".service", ".scope", ".slice", ".socket", ".mount", ".swap")


class ProcessFacts(Protocol):
    """Read-only facts; a frozen dataclass or a lazy object with properties both fit."""

    @property
    def comm(self) -> str: ...
    @property
    def uid(self) -> int | None: ...
    @property
    def user(self) -> str | None: ...
    @property
    def rss(self) -> int: ...
    @property
    def cgroup(self) -> str | None: ...
    @property
    def exe(self) -> str | None: ...
    @property
    def cmdline(self) -> tuple[str, ...]: ...


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def unit_of(cgroup: str | None) -> str | None:
    """The systemd unit a cgroup path belongs to: its last component with a unit suffix.

    ``/system.slice/nginx.service/worker`` -> ``nginx.service``.
    """
    if not cgroup:
        return None
    for part in reversed(cgroup.split("/")):
        if part.endswith(UNIT_SUFFIXES):
            return part
    return None


def is_considered(comm: str, daemon: DaemonSettings) -> bool:
    """Global filters on the comm name: exclude wins; an empty include admits everyone."""
    if daemon.exclude and any(_regex(p).fullmatch(comm) for p in daemon.exclude):  # once per process: keep it cheap
        return False
    return not daemon.include or any(_regex(p).fullmatch(comm) for p in daemon.include)


def rejected_by_comm(comm: str, rules: Sequence[Rule], daemon: DaemonSettings) -> bool:
    """True when the comm alone rules a process out: the global filters drop it, or
    every rule names a comm pattern it does not match.

    Such a verdict holds for as long as the comm does, so the scan may skip
    the process on later ticks without reading anything else about it.
    """
    if not is_considered(comm, daemon):
        return True
    return all(rule.match.comm is not None and not _regex(rule.match.comm).fullmatch(comm) for rule in rules)


def matches(match: Match, proc: ProcessFacts) -> bool:
    """True when every criterion given holds; cheap fields first, exe/cmdline last."""
    if match.comm is not None and not _regex(match.comm).fullmatch(proc.comm):
        return False
    if match.user is not None and not _user_matches(match.user, proc):
        return False
    if match.min_rss is not None and proc.rss < match.min_rss:
        return False
    if match.cgroup is not None and not (proc.cgroup and fnmatch.fnmatchcase(proc.cgroup, match.cgroup)):
        return False
    if match.unit is not None:
        unit = unit_of(proc.cgroup)
        if unit is None or not fnmatch.fnmatchcase(unit, match.unit):
            return False
    if match.exe is not None:
        exe = proc.exe
        if exe is None or not _regex(match.exe).fullmatch(exe):
            return False
    if match.cmdline is not None and not _regex(match.cmdline).search(" ".join(proc.cmdline)):
        return False
    return True


def _user_matches(wanted: str | int, proc: ProcessFacts) -> bool:
    if isinstance(wanted, int) or wanted.isdigit():
        return proc.uid is not None and proc.uid == int(wanted)
    return proc.user == wanted


def first_match(rules: Iterable[Rule], proc: ProcessFacts, daemon: DaemonSettings) -> Rule | None:
    """The first rule (in config order) matching ``proc``, or None; global filters apply first."""
    if not is_considered(proc.comm, daemon):
        return None
    return first_rule(rules, proc)


def first_rule(rules: Iterable[Rule], proc: ProcessFacts) -> Rule | None:
    """The first rule matching ``proc``, for callers that applied the global filters already."""
    for rule in rules:
        if matches(rule.match, proc):
            return rule
    return None

