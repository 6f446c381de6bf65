"""The shared policy vocabulary (numad_py/policyspec.py): a table of texts, good and bad."""

from __future__ import annotations

from collections import Counter

import pytest

from numad_py.policyspec import (
    PolicySpec, PolicySpecError, expected_split, make_policy, node_of_page, parse_policy, parse_weights,
    requirements, weighted_pattern,
)

GOOD = [
    ("default", PolicySpec("default")),
    ("local", PolicySpec("local")),
    ("preferred 1", PolicySpec("preferred", frozenset({1}))),
    ("preferred-many 0-2", PolicySpec("preferred-many", frozenset({0, 1, 2}))),
    ("bind 0,2", PolicySpec("bind", frozenset({0, 2}))),
    ("interleave 0-1", PolicySpec("interleave", frozenset({0, 1}))),
    ("weighted-interleave 0:3,2:1", PolicySpec("weighted-interleave", frozenset({0, 2}), ((0, 3), (2, 1)))),
    ("weighted-interleave 2:1,0:3", PolicySpec("weighted-interleave", frozenset({0, 2}), ((0, 3), (2, 1)))),
    ("bind 0-1 home-node 1", PolicySpec("bind", frozenset({0, 1}), home_node=1)),
    ("preferred-many 0-1 home-node 0 balancing", PolicySpec("preferred-many", frozenset({0, 1}), home_node=0,
                                                            balancing=True)),
    ("bind 1 balancing", PolicySpec("bind", frozenset({1}), balancing=True)),
    ("  BIND   0-1  ", PolicySpec("bind", frozenset({0, 1}))),
]


@pytest.mark.parametrize("text,spec", GOOD, ids=[t for t, _ in GOOD])
def test_parses_and_round_trips(text, spec):
    assert parse_policy(text) == spec
    assert parse_policy(spec.text()) == spec


BAD = [
    ("", "empty memory policy"),
    ("bogus 0", "unknown mode 'bogus'"),
    ("bind", "bind needs nodes"),
    ("weighted-interleave", "needs weights like 0:3,1:1"),
    ("local 0", "unexpected '0'"),
    ("preferred 0-1", "preferred takes exactly one node"),
    ("interleave 0-1 home-node 1", "home-node goes with bind or preferred-many, not interleave"),
    ("bind 0 home-node 1", "home-node 1 is not one of the policy's nodes 0"),
    ("bind 0-1 home-node", "unexpected 'home-node'"),
    ("bind 0-1 home-node x", "'x' is not a home-node number"),
    ("interleave 0-1 balancing", "balancing goes with bind or preferred-many"),
    ("bind 0-1 balancing balancing", "unexpected 'balancing'"),
    ("bind 3-1", "runs backwards"),
    ("bind 0-1 extra", "unexpected 'extra'"),
    ("weighted-interleave 0:3,0:1", "node 0 is weighted twice"),
    ("weighted-interleave 0:0", "weight of node 0 must be a whole number 1-255, got 0"),
    ("weighted-interleave 0:256", "1-255, got 256"),
    ("weighted-interleave 0=3", "'0=3' is not NODE:WEIGHT"),
    ("weighted-interleave 0:-1", "'-1' is not a weight number"),
    ("weighted-interleave ²:1", "is not a node number"),
    ("weighted-interleave 2000:1", "node 2000 is beyond the kernel's limit of 1023"),
]


@pytest.mark.parametrize("text,needle", BAD, ids=[t or "empty" for t, _ in BAD])
def test_refuses_with_one_line_reason(text, needle):
    with pytest.raises(PolicySpecError) as info:
        parse_policy(text)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_make_policy_takes_toml_shaped_weights():
    spec = make_policy("weighted-interleave", weights={"0": 3, "2": 1})
    assert spec.nodes == {0, 2} and spec.weight_map() == {0: 3, 2: 1}
    with pytest.raises(PolicySpecError, match="weights are for weighted-interleave"):
        make_policy("interleave", {0}, weights={"0": 1})
    with pytest.raises(PolicySpecError, match="must be a whole number"):
        make_policy("weighted-interleave", weights={"0": True})


def test_interleave_weighs_each_node_once():
    assert parse_policy("interleave 0,2").weight_map() == {0: 1, 2: 1}
    assert parse_policy("bind 0").weight_map() == {}
    assert parse_policy("interleave 0-1").spreads_pages() and not parse_policy("bind 0-1").spreads_pages()


def test_requirements_name_kernel_releases():
    assert requirements(parse_policy("bind 0")) == []
    assert requirements(parse_policy("weighted-interleave 0:1")) == [("weighted-interleave", "6.9")]
    assert requirements(parse_policy("preferred-many 0-1 home-node 1 balancing")) == [
        ("preferred-many", "5.15"), ("home-node", "5.17"), ("balancing with preferred-many", "6.10")]


# --- the weighted round-robin ------------------------------------------------------

def test_pattern_runs_each_node_weight_times_in_node_order():
    assert weighted_pattern({2: 1, 0: 3}) == (0, 0, 0, 2)
    assert weighted_pattern({0: 1, 1: 1}) == (0, 1)
    assert weighted_pattern({0: 4, 1: 2}) == (0, 0, 1)     # common factor reduced
    with pytest.raises(PolicySpecError):
        weighted_pattern({})


@pytest.mark.parametrize("weights,pages", [({0: 3, 1: 1}, 16384), ({0: 1, 1: 1}, 32768),
                                           ({0: 5, 1: 2, 3: 1}, 10000)])
def test_page_assignment_gives_the_weighted_split(weights, pages):
    pattern = weighted_pattern(weights)
    counts = Counter(node_of_page(pattern, i) for i in range(pages))
    whole = sum(weights.values())
    for node, w in weights.items():
        assert abs(counts[node] - pages * w / whole) <= len(pattern)
    assert set(counts) == set(weights)


def test_page_assignment_keeps_a_huge_page_on_one_node():
    pattern = weighted_pattern({0: 1, 1: 1})
    nodes = [node_of_page(pattern, i, unit_pages=512) for i in range(2048)]
    assert nodes[:512] == [0] * 512 and nodes[512:1024] == [1] * 512 and nodes[1024] == 0


def test_expected_split():
    assert expected_split({0: 3, 1: 1}, 64 << 20) == {0: 48 << 20, 1: 16 << 20}


def test_weights_text():
    assert parse_weights("0:3, 2:1") == {0: 3, 2: 1}
