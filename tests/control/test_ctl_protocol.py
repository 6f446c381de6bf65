"""The control protocol parser: tables of good and bad lines, then hypothesis over anything."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numad_py.control import protocol as P


def parse(obj) -> object:
    return P.parse_request(json.dumps(obj).encode())


def err(line) -> P.ProtocolError:
    with pytest.raises(P.ProtocolError) as info:
        P.parse_request(line if isinstance(line, (bytes, str)) else json.dumps(line).encode())
    return info.value


BASE = {"v": 1, "id": "r1"}


# --- good requests ---------------------------------------------------------------

def test_migrate_forms_of_to_are_normalised():
    assert parse({**BASE, "op": "migrate", "pid": 5, "to": 1}).to == "1"
    assert parse({**BASE, "op": "migrate", "pid": 5, "to": [1, 0, 2]}).to == "0-2"
    assert parse({**BASE, "op": "migrate", "pid": 5, "to": " 3,1-2 "}).to == "1-3"
    assert parse({**BASE, "op": "migrate", "pid": 5, "to": "all"}).to == "all"


def test_migrate_memory_selectors():
    whole = parse({**BASE, "op": "migrate", "pid": 5, "to": 1})
    assert whole.memory == "all" and whole.move_all is False and whole.progress is True
    some = parse({**BASE, "op": "migrate", "pid": 5, "to": 1, "range": ["7f00-7f80", "0x1000-0x2000"],
                  "mapping": "[heap]", "move_all": True, "progress": False})
    assert some.memory == ("7f00-7f80", "0x1000-0x2000", "[heap]")
    assert some.move_all and not some.progress


@pytest.mark.parametrize("obj, op", [
    ({"op": "status"}, "status"), ({"op": "plan"}, "plan"), ({"op": "reload"}, "reload"),
    ({"op": "cancel", "request": "abc"}, "cancel"),
    ({"op": "query", "pid": 1}, "query"), ({"op": "query", "pid": 1, "range": "10-20"}, "query"),
    ({"op": "drain", "node": 2}, "drain"), ({"op": "drain", "node": 2, "to": "0-1"}, "drain"),
])
def test_every_op_parses(obj, op):
    req = parse({**BASE, **obj})
    assert req.op == op and req.id == "r1"


def test_trailing_newline_and_str_input_are_fine():
    assert P.parse_request(b'{"v":1,"id":"x","op":"status"}\n').op == "status"
    assert P.parse_request('{"v":1,"id":"x","op":"status"}').op == "status"


# --- bad requests: code, message, id echoed when it could be read ------------------

@pytest.mark.parametrize("line, code, words", [
    (b"", "bad_request", "malformed JSON"),
    (b"{", "bad_request", "malformed JSON"),
    (b"\xff\xfe", "bad_request", "not UTF-8"),
    (b"[1,2]", "bad_request", "must be a JSON object"),
    (b'"status"', "bad_request", "must be a JSON object"),
    (b'{"id":"a","op":"status"}', "bad_request", 'missing field "v"'),
    (b'{"v":2,"id":"a","op":"status"}', "bad_request", "unsupported protocol version 2"),
    (b'{"v":true,"id":"a","op":"status"}', "bad_request", "unsupported protocol version"),
    (b'{"v":1,"op":"status"}', "bad_request", 'missing field "id"'),
    (b'{"v":1,"id":7,"op":"status"}', "bad_request", '"id" must be printable text'),
    (b'{"v":1,"id":"","op":"status"}', "bad_request", '"id" must be printable text'),
    (b'{"v":1,"id":"a"}', "bad_request", 'missing field "op"'),
    (b'{"v":1,"id":"a","op":5}', "bad_request", '"op" must be a string'),
    (b'{"v":1,"id":"a","op":"explode"}', "unknown_op", 'unknown operation "explode"'),
    (b'{"v":1,"id":"a","op":"status","x":1}', "bad_request", 'unknown field "x"'),
    (b'{"v":1,"id":"a","op":"migrate","pid":"5","to":1}', "bad_request", "pid"),
    (b'{"v":1,"id":"a","op":"migrate","pid":true,"to":1}', "bad_request", "pid"),
    (b'{"v":1,"id":"a","op":"migrate","pid":5.0,"to":1}', "bad_request", "pid"),
    (b'{"v":1,"id":"a","op":"migrate","pid":0,"to":1}', "bad_request", "greater than or equal to 1"),
    (b'{"v":1,"id":"a","op":"migrate","pid":99999999999,"to":1}', "bad_request", "pid"),
    (b'{"v":1,"id":"a","op":"migrate","pid":5}', "bad_request", 'missing field "to"'),
    (b'{"v":1,"id":"a","op":"migrate","pid":5,"to":1.5}', "bad_request", "expected a node list"),
    (b'{"v":1,"id":"a","op":"migrate","pid":5,"to":"x"}', "bad_request", "not a node number"),
    (b'{"v":1,"id":"a","op":"migrate","pid":5,"to":[]}', "bad_request", "empty node list"),
    (b'{"v":1,"id":"a","op":"migrate","pid":5,"to":2000}', "bad_request", "to"),
    (b'{"v":1,"id":"a","op":"migrate","pid":5,"to":1,"range":"zz"}', "bad_request", "bad address range"),
    (b'{"v":1,"id":"a","op":"migrate","pid":5,"to":1,"range":"20-10"}', "bad_request", "end must be above"),
    (b'{"v":1,"id":"a","op":"migrate","pid":5,"to":1,"move_all":"yes"}', "bad_request", "move_all"),
    (b'{"v":1,"id":"a","op":"drain"}', "bad_request", 'missing field "node"'),
    (b'{"v":1,"id":"a","op":"cancel"}', "bad_request", 'missing field "request"'),
    (b'{"v":1,"id":"a","op":"status","n":NaN}', "bad_request", "NaN is not valid JSON"),
    (b'[' * 100000 + b']' * 100000, "too_large", "longer than"),
])
def test_bad_lines(line, code, words):
    e = err(line)
    assert e.code == code, e.message
    assert words in e.message


def test_deep_nesting_is_a_clean_error():
    e = err(b"[" * 20000 + b"]" * 20000)
    assert e.code == "bad_request"


def test_error_echoes_the_id_when_readable():
    assert err(b'{"v":1,"id":"abc","op":"nope"}').request_id == "abc"
    assert err(b'{"v":1,"id":"abc","op":"migrate","pid":"x","to":1}').request_id == "abc"
    assert err(b'{"v":1,"id":{"x":1},"op":"nope"}').request_id is None


def test_replies_round_trip():
    for msg in (P.ok("a", {"x": 1}), P.error("a", "busy", "later"), P.progress("a", 5, 10)):
        assert P.parse_reply(P.encode(msg)) == msg
    with pytest.raises(P.ProtocolError):
        P.parse_reply(b'{"v":1,"id":"a","ok":false,"error":{"code":"weird","message":"x"}}')


# --- property tests: any input -> a request or a clean ProtocolError ------------------

def _never_crashes(line) -> None:
    try:
        req = P.parse_request(line)
    except P.ProtocolError as exc:
        assert exc.code in P.ERROR_CODES
        assert exc.message
        # and the error reply is always encodable
        assert P.parse_reply(P.encode(P.from_error(exc)))["ok"] is False
    else:
        assert req.op in P.OPS
        assert P.parse_reply(P.encode(P.ok(req.id, req.model_dump(mode="json"))))["ok"]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes(data):
    _never_crashes(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_any_json(value):
    _never_crashes(json.dumps(value).encode())


# Objects that look like requests: the right keys with any values, plus stray keys.
field_values = st.one_of(json_values, st.integers(min_value=-5, max_value=5000),
                         st.sampled_from(["0", "1", "0-1", "all", "7f00-7f80", "[heap]", "anon", "x-y",
                                          "5-1", ""]),
                         st.lists(st.integers(min_value=-2, max_value=1100), max_size=4))


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(P.OPS + ("bogus",)),
       st.dictionaries(st.sampled_from(["pid", "to", "range", "mapping", "move_all", "progress", "node",
                                        "request", "v", "id", "junk"]), field_values, max_size=6))
def test_request_shaped_objects(op, fields):
    _never_crashes(json.dumps({"v": 1, "id": "q", "op": op, **fields}).encode())
