"""Durations ("500ms", "10s", "5m", "1h"), sizes ("64KiB", "512MiB", plain int = bytes) and pids.

Plain functions raising ``ValueError`` with a message fit to show a user;
the pydantic models turn those into field errors.  Digits are ASCII only
(regex ``[0-9]`` rather than a Unicode digit class; ``int()`` takes "１２" and "١٢").  Every value is finite and
bounded here (a duration at most a year, a size below 2**63, what a C long
holds); the models set tighter bounds per field.
"""

from __future__ import annotations

import math

from .errors import InvalidArgument

# Patterns, compiled (and cached) by re on first use: importing re costs half an interpreter
# start-up (measured on the host), and the CLI's light paths format sizes but never parse them.
_DURATION = r"\s*([0-9]{1,12}(?:\.[0-9]{1,9})?)\s*(ms|s|m|h)\s*"
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_DURATION = 365 * 86400.0
MAX_SIZE = (1 << 63) - 1

_SIZE = r"\s*([0-9]{1,20})\s*(B|KiB|MiB|GiB|TiB)?\s*"
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def parse_duration(value: object) -> float:
    """Seconds from ``"500ms"``, ``"10s"``, ``"5m"``, ``"1h"``; a unit is required."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"expected a duration string like \"500ms\", \"10s\", \"5m\" or \"1h\", got {_short(value)}")
    import re
    m = re.fullmatch(_DURATION, value, re.ASCII)
    if not m:
        raise ValueError(f"bad duration {_short(value)}: expected a number and a unit (ms, s, m, h), e.g. \"10s\"")
    seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError(f"duration {_short(value)} is longer than a year")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from ``"64KiB"``, ``"512MiB"``, ``"1GiB"`` or a plain non-negative integer."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like \"512MiB\" or a number of bytes, got {_short(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return _bounded_size(value, value)
    if not isinstance(value, str):
        raise ValueError(f"expected a size like \"512MiB\" or a number of bytes, got {_short(value)}")
    import re
    m = re.fullmatch(_SIZE, value, re.ASCII)
    if not m:
        raise ValueError(f"bad size {_short(value)}: expected bytes or a number with KiB, MiB, GiB or TiB, e.g. \"512MiB\"")
    return _bounded_size(int(m.group(1)) * _SIZE_UNITS[m.group(2)], value)


def _bounded_size(nbytes: int, written: object) -> int:
    if nbytes > MAX_SIZE:
        raise ValueError(f"size {_short(written)} is too large (at most 8EiB)")
    return nbytes


MAX_PID = 4194304  # PID_MAX_LIMIT on 64-bit kernels


def parse_pid(text: str) -> int:
    """A process id as a user writes it: ASCII digits, 1 to PID_MAX_LIMIT."""
    spec = text.strip(" \t\n") if isinstance(text, str) else ""   # not str.strip(): it eats "\x1f" too
    if not (spec.isascii() and spec.isdigit()) or len(spec) > 7 or not 0 < int(spec) <= MAX_PID:
        shown = repr(spec) if len(spec) <= 20 else repr(spec[:20]) + "..."
        raise InvalidArgument(f"bad pid {shown}: expected a process id like 1234")
    return int(spec)


def format_size(nbytes: int) -> str:
    """Human size for messages: 1536 -> "1.5KiB"."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}TiB"
