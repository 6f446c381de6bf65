"""Durations ("500ms", "10s", "5m", "1h") and sizes ("64KiB", "512MiB", plain int = bytes).

Plain functions raising ``ValueError`` with a message fit to show a user;
the pydantic models turn those into field errors.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|TiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def parse_duration(value: object) -> float:
    """Seconds from ``"500ms"``, ``"10s"``, ``"5m"``, ``"1h"``; a unit is required."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"expected a duration string like \"500ms\", \"10s\", \"5m\" or \"1h\", got {value!r}")
    m = _DURATION.match(value)
    if not m:
        raise ValueError(f"bad duration {value!r}: expected a number and a unit (ms, s, m, h), e.g. \"10s\"")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def parse_size(value: object) -> int:
    """Bytes from ``"64KiB"``, ``"512MiB"``, ``"1GiB"`` or a plain non-negative integer."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like \"512MiB\" or a number of bytes, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a size like \"512MiB\" or a number of bytes, got {value!r}")
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"bad size {value!r}: expected bytes or a number with KiB, MiB, GiB or TiB, e.g. \"512MiB\"")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]


def format_size(nbytes: int) -> str:
    """Human size for messages: 1536 -> "1.5KiB"."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}TiB"
