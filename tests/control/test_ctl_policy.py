"""The socket speaks the shared policy vocabulary: migrate with an interleave policy."""

from __future__ import annotations

import json

import pytest

from numad_py.control import protocol as P

BASE = {"v": 1, "id": "r1", "op": "migrate", "pid": 5}


def parse(obj):
    return P.parse_request(json.dumps(obj))


def test_weighted_policy_gives_target_and_weights():
    req = parse({**BASE, "policy": "weighted-interleave 1:1,0:3"})
    assert req.policy == "weighted-interleave 0:3,1:1"
    assert req.target_text == "0-1" and req.weights == ((0, 3), (1, 1))


def test_plain_interleave_weighs_one_each_and_to_keeps_working():
    assert parse({**BASE, "policy": "interleave 0-2"}).weights == ((0, 1), (1, 1), (2, 1))
    plain = parse({**BASE, "to": 1})
    assert plain.target_text == "1" and plain.weights == ()


@pytest.mark.parametrize("extra,needle", [
    ({}, 'missing field "to" (or "policy"'),
    ({"to": 1, "policy": "interleave 0-1"}, "not both"),
    ({"policy": "bind 0-1"}, "use `to` for a node set"),
    ({"policy": "weighted-interleave 0:0"}, "weight of node 0 must be a whole number 1-255"),
    ({"policy": "scatter 0-1"}, "unknown mode 'scatter'"),
])
def test_bad_policy_requests_are_one_line(extra, needle):
    with pytest.raises(P.ProtocolError) as info:
        parse({**BASE, **extra})
    assert info.value.code == "bad_request" and needle in str(info.value) and "\n" not in str(info.value)
