"""bench/spread.py: the spread of paired ratios and when a goal counts as met."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from spread import format_spread, parse_goal, spread, verdict


def test_spread_of_paired_ratios():
    assert spread([1.2, 0.9, 1.0, 1.1, 0.95]) == {"min": 0.9, "median": 1.0, "max": 1.2, "n": 5}
    assert spread([]) == {"min": None, "median": None, "max": None, "n": 0}


@pytest.mark.parametrize("goal, expected", [
    (">= 0.95", (">=", 0.95)), ("<= 1.10", ("<=", 1.1)), ("<= 139 (20 x 6.9)", ("<=", 139.0)),
    ("-", None), (None, None), ("", None), ("report", None),
])
def test_goal_text(goal, expected):
    assert parse_goal(goal) == expected


@pytest.mark.parametrize("goal, ratios, expected", [
    ("<= 2.0", [1.5, 1.7, 1.9], "yes"),
    ("<= 2.0", [1.5, 1.7, 2.4], "spread"),    # the median meets it, the worst pair does not
    ("<= 2.0", [1.5, 2.1, 2.4], "NO"),
    (">= 0.95", [0.96, 0.97, 1.01], "yes"),
    (">= 0.95", [0.90, 0.97, 1.01], "spread"),  # for a >= goal the far end is the minimum
    (">= 0.95", [0.90, 0.93, 1.01], "NO"),
    ("<= 1.10", [1.10, 1.10], "yes"),          # the bound itself meets it
    ("-", [1.0], None),
    ("<= 1.10", [], None),
])
def test_verdict_needs_median_and_far_end_to_agree(goal, ratios, expected):
    assert verdict(goal, spread(ratios)) == expected


def test_format():
    assert format_spread(spread([0.9, 1.0, 1.25])) == "0.900-1.250 (n=3)"
    assert format_spread(None) == "-" and format_spread(spread([])) == "-"
