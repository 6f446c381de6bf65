"""Paired ratios as a spread, and the verdict on a goal (PURE; tested in tests/bench/).

A figure is the median of its paired ratios; the spread is their min and max.
A goal is *met* only when the median and the end of the spread on the goal's
losing side both meet it: the max for a ``<=`` goal, the min for a ``>=``
goal.  When the median meets the goal and that end does not, the run cannot
tell: the verdict is "spread", which counts as not met.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence

_GOAL = re.compile(r"^\s*(<=|>=)\s*([0-9]+(?:\.[0-9]+)?)")


def spread(ratios: Sequence[float]) -> dict:
    """``{"min", "median", "max", "n"}`` of the paired ratios (empty: all None, n 0)."""
    xs = [float(x) for x in ratios]
    if not xs:
        return {"min": None, "median": None, "max": None, "n": 0}
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs)}


def parse_goal(goal: str | None) -> tuple[str, float] | None:
    """``"<= 1.10"`` -> ``("<=", 1.1)``; text after the number (a note) is ignored; None if no goal."""
    m = _GOAL.match(goal or "")
    return (m.group(1), float(m.group(2))) if m else None


def verdict(goal: str | None, s: dict) -> str | None:
    """``"yes"``, ``"NO"`` (the median misses), ``"spread"`` (the median meets it, the far end
    of the spread does not), or None when there is no goal or no samples."""
    parsed = parse_goal(goal)
    if parsed is None or not s.get("n"):
        return None
    op, bound = parsed

    def ok(x: float) -> bool:
        return x <= bound if op == "<=" else x >= bound

    if not ok(s["median"]):
        return "NO"
    return "yes" if ok(s["max"] if op == "<=" else s["min"]) else "spread"


def format_spread(s: dict | None, digits: int = 3) -> str:
    """``"0.93-0.97 (n=5)"`` or ``"-"``."""
    if not s or not s.get("n"):
        return "-"
    return f"{s['min']:.{digits}f}-{s['max']:.{digits}f} (n={s['n']})"
