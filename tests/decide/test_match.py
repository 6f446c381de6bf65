"""Rule matching and unit names, on literal facts."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from numad_py.config.models import DaemonSettings, Match, Rule
from numad_py.decide.match import first_match, is_considered, matches, rejected_by_comm, unit_of

from decide_literals import proc


@pytest.mark.parametrize(
    "cgroup, unit",
    [
        ("/system.slice/nginx.service", "nginx.service"),
        ("/system.slice/nginx.service/worker", "nginx.service"),
        ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-12.scope", "app-firefox-12.scope"),
        ("/system.slice", "system.slice"),
        ("/", None),
        ("", None),
        (None, None),
        ("/docker/0123abcd", None),
        ("/machine.slice/libvirt-qemu-1-vm.scope/vcpu0", "libvirt-qemu-1-vm.scope"),
    ],
)
def test_unit_of(cgroup, unit):
    assert unit_of(cgroup) == unit


@pytest.mark.parametrize(
    "criteria, fields, expected",
    [
        ({"comm": "postgres"}, {}, True),
        ({"comm": "post"}, {}, False),
        ({"comm": "post.*"}, {}, True),
        ({"user": "pg"}, {}, True),
        ({"user": "1000"}, {}, True),
        ({"user": 1000}, {}, True),
        ({"user": 0}, {}, False),
        ({"user": "pg"}, {"user": None}, False),
        ({"user": 1000}, {"uid": None}, False),
        ({"cgroup": "/system.slice/*"}, {}, True),
        ({"cgroup": "/user.slice/*"}, {}, False),
        ({"cgroup": "/*"}, {"cgroup": None}, False),
        ({"unit": "postgresql.service"}, {}, True),
        ({"unit": "*.scope"}, {}, False),
        ({"exe": "/usr/bin/postgres"}, {}, True),
        ({"exe": "postgres"}, {}, False),
        ({"cmdline": "-D"}, {}, True),
        ({"cmdline": "^-D"}, {}, False),
        ({"cmdline": "x"}, {"cmdline": ()}, False),
        ({"min_rss": "1GiB"}, {}, True),
        ({"min_rss": "1GiB"}, {"residency": {0: 1}, "rss": 1}, False),
        ({"comm": "postgres", "user": "root"}, {}, False),  # all criteria must hold
    ],
)
def test_matches(criteria, fields, expected):
    assert matches(Match.model_validate(criteria), proc(**fields)) is expected


def test_lazy_fields_are_not_touched_when_a_cheap_criterion_fails():
    class Facts:
        comm, uid, user, rss, cgroup = "nginx", 0, "root", 0, "/"

        @property
        def exe(self):
            raise AssertionError("exe read although comm already failed")

        cmdline = exe

    assert not matches(Match(comm="postgres", exe=".*", cmdline="."), Facts())


def test_first_match_and_filters():
    rules = [Rule(name="a", match=Match(comm="nginx")), Rule(name="b", match=Match(user="pg"))]
    assert first_match(rules, proc(), DaemonSettings()).name == "b"
    assert first_match(rules, proc(), DaemonSettings(exclude=["postgres"])) is None
    assert first_match([], proc(), DaemonSettings()) is None


@given(st.text(min_size=0, max_size=15))
def test_empty_include_considers_every_comm(comm):
    assert is_considered(comm, DaemonSettings())


COMM_PATTERNS = st.sampled_from([None, "postgres", "post.*", "nginx|postgres", "x"])
OTHER_CRITERIA = st.sampled_from([{}, {"user": "pg"}, {"user": "root"}, {"cmdline": "-D"}, {"unit": "*.service"}])


@given(
    st.lists(st.tuples(COMM_PATTERNS, OTHER_CRITERIA), max_size=4),
    st.sampled_from(["postgres", "postmaster", "nginx", "x", "bash"]),
    st.sampled_from([[], ["bash"], ["post.*"]]),
)
def test_a_comm_ruled_out_never_matches_whatever_else_the_process_is(specs, comm, exclude):
    # The scan skips such processes for good (while their comm stays): that is
    # only sound if no rule could match them with any other facts.
    rules = [Rule(name=f"r{i}", match=Match(comm=pattern, **other), nodes="0")
             for i, (pattern, other) in enumerate(specs) if pattern or other]
    daemon = DaemonSettings(exclude=exclude)
    if rejected_by_comm(comm, rules, daemon):
        for facts in ({}, {"user": "root", "uid": 0}, {"cmdline": ("x", "-D")}):
            assert first_match(rules, proc(comm=comm, **facts), daemon) is None


def test_ruled_out_by_comm_only_when_every_rule_names_another_comm():
    pg = Rule(name="pg", match=Match(comm="postgres"), nodes="0")
    by_user = Rule(name="u", match=Match(user="pg"), nodes="0")
    assert rejected_by_comm("nginx", [pg], DaemonSettings())
    assert not rejected_by_comm("postgres", [pg], DaemonSettings())
    assert not rejected_by_comm("nginx", [pg, by_user], DaemonSettings())  # the user rule still could
    assert rejected_by_comm("postgres", [pg], DaemonSettings(exclude=["post.*"]))
    assert rejected_by_comm("anything", [], DaemonSettings())
