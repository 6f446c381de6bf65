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

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .wire import (  # noqa: F401  (re-exported: the protocol's one namespace)
    VERSION,
    MAX_LINE,
    MAX_ID,
    MAX_SELECTORS,
    PID_MAX,
    OPS,
    PLACEMENT_OPS,
    ADMIN_OPS,
    ERROR_CODES,
    ProtocolError,
    loads,
    encode,
    ok,
    error,
    progress,
    from_error,
    request,
    parse_reply,
    _json_type,
    _short,
)
from ..nodes import MAX_NODE, NodeListError, format_nodes, parse_nodes
from ..policyspec import parse_policy
from ..selectors import is_range, parse_range

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


class _MoveRequest(_Request):
    """What every request that moves pages carries: where to, move-all, progress lines."""
    to: Node | list[Node] | Text | None = None
    move_all: bool = False
    progress: bool = True

    @field_validator("to")
    @classmethod
    def _to(cls, value):
        return None if value is None else _node_spec(value)


class MigrateRequest(_MoveRequest):
    op: Literal["migrate"]
    pid: Pid
    # Instead of `to`: an interleave policy in the shared vocabulary ("weighted-interleave 0:3,1:1"):
    # page i goes to the weighted round-robin's node (docs/policies.md).
    policy: Text | None = None
    range: Text | list[Text] | None = None
    mapping: Text | list[Text] | None = None

    @field_validator("policy")
    @classmethod
    def _policy(cls, value):
        if value is None:
            return None
        spec = parse_policy(value)      # PolicySpecError is a ValueError with the reason
        if not spec.spreads_pages():
            raise ValueError(f"policy {spec.mode} here: use `to` for a node set; policy takes interleave "
                             "or weighted-interleave")
        return spec.text()

    @model_validator(mode="after")
    def _one_target(self):
        if self.to is None and self.policy is None:
            raise ValueError('missing field "to" (or "policy": an interleave policy)')
        if self.to is not None and self.policy is not None:
            raise ValueError('give "to" (node list) or "policy" (interleave policy), not both')
        return self

    @property
    def target_text(self) -> str:
        """The node list to check and move onto (the policy's nodes when a policy is given)."""
        if self.policy is not None:
            return format_nodes(parse_policy(self.policy).nodes)
        return str(self.to)   # normalised to text by _to

    @property
    def weights(self) -> tuple[tuple[int, int], ...]:
        return () if self.policy is None else tuple(sorted(parse_policy(self.policy).weight_map().items()))

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


class DrainRequest(_MoveRequest):
    op: Literal["drain"]
    node: Node


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


class AdviseRequest(_Request):
    """Where a new workload of ``cpus`` CPUs and ``memory`` bytes fits best now."""
    op: Literal["advise"]
    cpus: Annotated[int, Field(ge=1, le=1 << 16)]
    memory: Annotated[int, Field(ge=0, le=1 << 60)] = 0
    reserve: bool = True


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
    "advise": AdviseRequest, "status": StatusRequest, "plan": PlanRequest, "reload": ReloadRequest,
    "cancel": CancelRequest,
}
Request = (MigrateRequest | DrainRequest | QueryRequest | AdviseRequest | StatusRequest | PlanRequest
           | ReloadRequest | CancelRequest)


# --- parsing -------------------------------------------------------------------

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
