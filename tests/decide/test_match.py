"""Rule matching and unit names, on literal facts."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from numad_py.config.models import DaemonSettings, Match, Rule
from numad_py.decide.match import first_match, is_considered, matches, unit_of

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
