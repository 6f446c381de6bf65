"""Shared pieces of the config models: field types, bounds and the checks several tables use.

Kept apart from :mod:`models` so a table in its own module (``tier.py``) can use them
without importing ``models`` back.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo

from ..nodes import NODE_SETS, NodeListError, format_nodes, parse_nodes
from ..units import parse_duration, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]

AUTO = "auto"
ALL = "all"
_OCTAL_MODE = re.compile(r"^0?[0-7]{3}$")
# Upper bounds: past them a value is a typo, and would overflow a timer or a
# C long further down ("3000000h" once passed check-config and killed `run --once`).
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
MAX_SCAN_INTERVAL = DAY
MAX_STALL = 10.0
MAX_COOLDOWN = 7 * DAY
MAX_EVERY = 7 * DAY
MAX_BUDGET = 1 << 40          # 1 TiB/s: beyond any memory bus
MAX_REGEX = 4096              # characters in one regex
MAX_REGEX_NESTING = 100       # groups inside groups: sre recurses per level


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _check_regex(pattern: str) -> str:
    if len(pattern) > MAX_REGEX:
        raise ValueError(f"regex of {len(pattern)} characters is longer than the limit of {MAX_REGEX}")
    if _group_depth(pattern) > MAX_REGEX_NESTING:
        # Whether sre compiles it depends on the caller's stack depth: refuse
        # it here rather than let the daemon's matcher hit RecursionError.
        raise ValueError(f"bad regex {_short(pattern)}: groups nested more than {MAX_REGEX_NESTING} deep")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regex {_short(pattern)}: {exc}") from None
    except (OverflowError, RecursionError, MemoryError) as exc:
        # a{99999999999} overflows sre's repeat count; deep nesting recurses
        raise ValueError(f"bad regex {_short(pattern)}: too large or too deeply nested ({type(exc).__name__})") from None
    return pattern


def _group_depth(pattern: str) -> int:
    """The deepest nesting of unescaped parentheses (an upper bound of sre's group nesting)."""
    depth = deepest = 0
    escaped = False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth = max(0, depth - 1)
    return deepest


def _short(text: str, limit: int = 60) -> str:
    """A repr for messages that stays on one line of reasonable length."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def _at_most(value: float, limit: float, unit: str) -> float:
    if value > limit:
        raise ValueError(f"must be at most {limit / {'s': 1, 'h': HOUR, 'd': DAY}[unit]:g}{unit}")
    return value


def _check_node_list(text: str, info: ValidationInfo, *, allow_auto: bool) -> str:
    """Normalise ``"0-1, 3"`` to ``"0-1,3"``; keep ``all``/``auto``; reject nodes not online."""
    spec = text.strip()
    if spec == AUTO:
        if allow_auto:
            return AUTO
        raise ValueError("'auto' is not allowed here: give a node list like '0-3,5' or 'all'")
    if spec == ALL or spec in NODE_SETS:
        return spec
    try:
        nodes = parse_nodes(spec)
    except NodeListError as exc:
        raise ValueError(str(exc)) from None
    online = (info.context or {}).get("online_nodes")
    if online is not None and not (info.data or {}).get("fleet"):
        missing = nodes - online
        if missing:
            subject = f"node {format_nodes(missing)} does" if len(missing) == 1 else f"nodes {format_nodes(missing)} do"
            raise ValueError(f"{subject} not exist on this machine (online nodes: {format_nodes(online) or 'none'}; "
                             "a rule shared by machines of other shapes says fleet = true)")
    return format_nodes(nodes)
