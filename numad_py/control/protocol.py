"""The control socket's wire protocol: one JSON object per line, versioned.

PURE: no sockets, no /proc; the server and the client both use it, and the
property tests feed it arbitrary bytes.  Documented in docs/control-protocol.md.

    request   {"v":1, "id":"r1", "op":"migrate", "pid":1234, "to":"1", ...}
    progress  {"v":1, "id":"r1", "event":"progress", "done_bytes":N, "total_bytes":M}
    reply     {"v":1, "id":"r1", "ok":true,  "result":{...}}
    error     {"v":1, "id":"r1", "ok":false, "error":{"code":"forbidden", "message":"..."}}

:func:`parse_request` turns any line into a validated request model or raises
:class:`ProtocolError` carrying the reply's code and a message that says
which field is wrong and why; it never raises anything else.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..nodes import MAX_NODE, NodeListError, format_nodes, parse_nodes
from ..sense.maps import is_range, parse_range

VERSION = 1
MAX_LINE = 64 * 1024          # bytes per line, newline excluded
MAX_ID = 128                  # characters of a request id
MAX_SELECTORS = 256           # ranges or mappings in one migrate request
PID_MAX = 1 << 22             # the kernel's PID_MAX_LIMIT on 64-bit

OPS = ("migrate", "drain", "query", "status", "plan", "reload", "cancel")
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


# --- request models ----------------------------------------------------------

RequestId = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
Pid = Annotated[int, Field(ge=1, le=PID_MAX)]
Node = Annotated[int, Field(ge=0, le=MAX_NODE)]
Text = Annotated[str, Field(min_length=1, max_length=4096)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: Literal[1]
    id: RequestId

    @field_validator("id")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("must be printable text (no control characters)")
        return value


def _node_spec(value: str | int | list[int]) -> str:
    """``"0-1"``, ``1``, ``[0, 1]`` or ``"all"`` -> canonical text (``"all"`` stays)."""
    if isinstance(value, int):
        return format_nodes([value])
    if isinstance(value, list):
        if not value:
            raise ValueError("empty node list")
        return format_nodes(value)
    if value.strip() == "all":
        return "all"
    try:
        return format_nodes(parse_nodes(value))
    except NodeListError as exc:
        raise ValueError(str(exc)) from None


def _selectors(value: str | list[str] | None, *, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    if not items:
        raise ValueError(f"empty {what} list")
    if len(items) > MAX_SELECTORS:
        raise ValueError(f"too many {what}s ({len(items)} > {MAX_SELECTORS})")
    for item in items:
        if not item.isprintable():
            raise ValueError(f"{what} {item[:40]!r} contains control characters")
    return tuple(items)


class MigrateRequest(_Request):
    op: Literal["migrate"]
    pid: Pid
    to: Node | list[Node] | Text
    range: Text | list[Text] | None = None
    mapping: Text | list[Text] | None = None
    move_all: bool = False
    progress: bool = True

    @field_validator("to")
    @classmethod
    def _to(cls, value):
        return _node_spec(value)

    @field_validator("range")
    @classmethod
    def _ranges(cls, value):
        ranges = _selectors(value, what="range")
        for text in ranges:
            if not is_range(text):
                raise ValueError(f"bad address range {text[:80]!r}: expected START-END in hex, "
                                 "e.g. 7f00a000-7f00c000")
            start, end = parse_range(text)   # end above start
            if end > 1 << 64:
                raise ValueError(f"address range {text[:80]!r} is beyond 64 bits")
        return ranges

    @field_validator("mapping")
    @classmethod
    def _mappings(cls, value):
        return _selectors(value, what="mapping")

    @property
    def memory(self) -> str | tuple[str, ...]:
        """What the executor moves: ``"all"`` or the selectors (hex ranges and mapping names)."""
        selectors = tuple(self.range or ()) + tuple(self.mapping or ())
        return selectors or "all"


class DrainRequest(_Request):
    op: Literal["drain"]
    node: Node
    to: Node | list[Node] | Text | None = None
    move_all: bool = False
    progress: bool = True

    @field_validator("to")
    @classmethod
    def _to(cls, value):
        return None if value is None else _node_spec(value)


class QueryRequest(_Request):
    op: Literal["query"]
    pid: Pid
    range: Text | None = None

    @field_validator("range")
    @classmethod
    def _range(cls, value):
        if value is not None and not is_range(value):
            raise ValueError(f"bad address range {value[:80]!r}: expected START-END in hex")
        if value is not None:
            parse_range(value)
        return value


class StatusRequest(_Request):
    op: Literal["status"]


class PlanRequest(_Request):
    op: Literal["plan"]


class ReloadRequest(_Request):
    op: Literal["reload"]


class CancelRequest(_Request):
    op: Literal["cancel"]
    request: RequestId = Field(description="id of the running request to cancel")


MODELS: dict[str, type[_Request]] = {
    "migrate": MigrateRequest, "drain": DrainRequest, "query": QueryRequest,
    "status": StatusRequest, "plan": PlanRequest, "reload": ReloadRequest,
    "cancel": CancelRequest,
}
Request = (MigrateRequest | DrainRequest | QueryRequest | StatusRequest | PlanRequest
           | ReloadRequest | CancelRequest)


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


def parse_request(line: bytes | str) -> Request:
    """One line (newline optional) -> a request model, or ProtocolError with the reply's code."""
    if len(line) > MAX_LINE + 2:
        raise ProtocolError("too_large", f"request line longer than {MAX_LINE} bytes")
    data = loads(line)
    if not isinstance(data, dict):
        raise ProtocolError("bad_request", f"a request must be a JSON object, got {_json_type(data)}")
    try:
        return _validate(data)
    except ProtocolError as exc:
        op = data.get("op")
        exc.op = op if isinstance(op, str) and op in MODELS else None
        raise


def _validate(data: dict) -> Request:
    rid = data.get("id")
    rid = rid if isinstance(rid, str) and 0 < len(rid) <= MAX_ID and rid.isprintable() else None
    if "v" not in data:
        raise ProtocolError("bad_request", f'missing field "v" (protocol version; this daemon speaks {VERSION})',
                            request_id=rid)
    if data["v"] != VERSION or isinstance(data["v"], bool):
        raise ProtocolError("bad_request", f"unsupported protocol version {_short(data['v'])} "
                            f"(this daemon speaks {VERSION})", request_id=rid)
    if "id" not in data:
        raise ProtocolError("bad_request", 'missing field "id" (a string naming the request)')
    if rid is None:
        raise ProtocolError("bad_request", f'"id" must be printable text of 1-{MAX_ID} characters, '
                            f"got {_short(data['id'])}")
    op = data.get("op")
    if "op" not in data:
        raise ProtocolError("bad_request", f'missing field "op" (one of: {", ".join(OPS)})', request_id=rid)
    if not isinstance(op, str):
        raise ProtocolError("bad_request", f'"op" must be a string, got {_json_type(op)}', request_id=rid)
    model = MODELS.get(op)
    if model is None:
        raise ProtocolError("unknown_op", f"unknown operation {_short(op)} (one of: {', '.join(OPS)})",
                            request_id=rid)
    try:
        return model.model_validate(data)  # type: ignore[return-value]  # one of Request's members
    except ValidationError as exc:
        raise ProtocolError("bad_request", f"{op}: {describe(exc)}", request_id=rid) from None
    except (ValueError, TypeError, OverflowError) as exc:  # defensive: validators are ours
        raise ProtocolError("bad_request", f"{op}: {exc}", request_id=rid) from None


TYPE_HINTS = {
    "to": 'expected a node list: a number (1), an array of numbers ([0, 1]) or a string ("0-1", "all")',
    "range": 'expected a hex range "START-END" (as in /proc/PID/maps) or an array of them',
    "mapping": 'expected a mapping name ("[heap]", "anon", a path or glob) or an array of them',
}


def describe(exc: ValidationError) -> str:
    """Pydantic errors as ``field: what is wrong`` sentences, unions folded to one line each."""
    grouped: dict[str, list[Any]] = {}
    for err in exc.errors(include_url=False):
        # Drop union branch names ("str", "list[int]", "function-after[...]") from the path.
        path = ".".join(str(p) for p in err["loc"] if not _is_branch(str(p))) or "request"
        grouped.setdefault(path, []).append(err)
    out = []
    for path, errs in grouped.items():
        first = errs[0]
        specific = [e for e in errs if e["type"] == "value_error"]
        if first["type"] == "extra_forbidden":
            out.append(f'unknown field "{path}"')
        elif first["type"] == "missing":
            out.append(f'missing field "{path}"')
        elif specific or len(errs) == 1:
            e = (specific or errs)[0]
            msg = e["msg"].removeprefix("Value error, ")
            out.append(f"{path}: {msg} (got {_short(e.get('input'))})")
        else:  # every branch of a union refused the type
            top = path.split(".")[0]
            hint = TYPE_HINTS.get(top, first["msg"])
            out.append(f"{path}: {hint} (got {_short(first.get('input'))})")
    return "; ".join(out)


def _is_branch(part: str) -> bool:
    return (part in ("str", "int", "bool", "list[int]", "list[str]", "none")
            or part.startswith(("function-", "constrained-", "literal[", "list[", "union[")))


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
