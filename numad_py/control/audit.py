"""The audit line: one per placement-changing or refused request, every field escaped.

``key=value`` pairs; a number is written bare, anything else is always
double-quoted with backslash escapes (``\\"``, ``\\\\``, control characters as
``\\n``/``\\xNN``), so a request id or mapping name chosen by a client can
never end its field and forge another (``result=done`` inside an id stays
inside its quotes).
"""

from __future__ import annotations

import logging

audit_log = logging.getLogger("numad_py.audit")

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
MAX_FIELD = 200          # characters of one value kept (memory selectors can be long)


def quote(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    if len(text) > MAX_FIELD:
        text = text[:MAX_FIELD] + "..."
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif not ch.isprintable():
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def line(fields: dict[str, object]) -> str:
    """``k=v`` pairs in order; None values are left out."""
    return " ".join(f"{key}={quote(value)}" for key, value in fields.items() if value is not None)


def record(fields: dict[str, object]) -> None:
    audit_log.info("%s", line(fields))
