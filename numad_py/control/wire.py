"""The control socket's wire format without pydantic: constants, JSON lines, replies.

The client (and so every light CLI command) needs only this; request validation
with pydantic models lives in :mod:`protocol`, which the server imports.
Documented in docs/control-protocol.md.
"""

from __future__ import annotations

import json
import math
from typing import Any

VERSION = 1
MAX_LINE = 64 * 1024          # bytes per line, newline excluded
MAX_ID = 128                  # characters of a request id
MAX_SELECTORS = 256           # ranges or mappings in one migrate request
PID_MAX = 1 << 22             # the kernel's PID_MAX_LIMIT on 64-bit

OPS = ("migrate", "drain", "query", "advise", "status", "plan", "reload", "cancel")
PLACEMENT_OPS = frozenset({"migrate", "drain"})   # audited; go through the executor
ADMIN_OPS = frozenset({"drain", "reload"})

ERROR_CODES = ("bad_request", "unknown_op", "forbidden", "not_found", "gone", "busy",
               "too_large", "internal")


class ProtocolError(Exception):
    """A request that gets an error reply; ``code`` is one of ERROR_CODES."""

    def __init__(self, code: str, message: str, *, request_id: str | None = None,
                 op: str | None = None):
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.op = op            # the request's op when it could be read (for the audit)



# --- parsing -------------------------------------------------------------------

def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """Strict JSON: no NaN/Infinity; any failure is a ProtocolError (bad_request)."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_request", f"line is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ProtocolError("bad_request", "malformed JSON: nested too deeply") from None
    except ValueError as exc:   # JSONDecodeError, over-long integers
        raise ProtocolError("bad_request", f"malformed JSON: {exc}") from None


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 40) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# --- replies -----------------------------------------------------------------------

def encode(message: dict) -> bytes:
    """One message as a line (compact JSON, newline-terminated)."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False, default=_default).encode() + b"\n"


def _default(value: Any):
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def ok(request_id: str | None, result: dict) -> dict:
    return {"v": VERSION, "id": request_id, "ok": True, "result": result}


def error(request_id: str | None, code: str, message: str) -> dict:
    assert code in ERROR_CODES, code
    return {"v": VERSION, "id": request_id, "ok": False, "error": {"code": code, "message": message}}


def progress(request_id: str, done_bytes: int, total_bytes: int) -> dict:
    return {"v": VERSION, "id": request_id, "event": "progress",
            "done_bytes": int(done_bytes), "total_bytes": int(total_bytes)}


def from_error(exc: ProtocolError, request_id: str | None = None) -> dict:
    return error(exc.request_id if exc.request_id is not None else request_id, exc.code, exc.message)


def request(op: str, request_id: str, **args) -> dict:
    """A request message (the client side); ``None`` arguments are left out."""
    return {"v": VERSION, "id": request_id, "op": op, **{k: v for k, v in args.items() if v is not None}}


def parse_reply(line: bytes | str) -> dict:
    """A reply or event from the daemon, shape-checked; ProtocolError(internal) if it is not one."""
    data = loads(line)
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise ProtocolError("internal", f"daemon sent something that is not a v{VERSION} message: "
                            f"{_short(data, 120)}")
    if data.get("event") == "progress":
        if not isinstance(data.get("done_bytes"), int) or not isinstance(data.get("total_bytes"), int):
            raise ProtocolError("internal", f"malformed progress event: {_short(data, 120)}")
        return data
    if data.get("ok") is True and isinstance(data.get("result"), dict):
        return data
    err = data.get("error")
    if data.get("ok") is False and isinstance(err, dict) and err.get("code") in ERROR_CODES \
            and isinstance(err.get("message"), str):
        return data
    raise ProtocolError("internal", f"malformed reply from the daemon: {_short(data, 120)}")
