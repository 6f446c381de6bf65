"""Authorization table: peer x op x target owner x move-all -> allow/deny with a reason."""

from __future__ import annotations

import pytest

from numad_py.control.auth import Peer, authorize, is_admin

ROOT = Peer(uid=0, gid=0, pid=1)
ALICE = Peer(uid=1000, gid=1000, pid=10)
BOB = Peer(uid=1001, gid=1001, pid=11)
OPER = Peer(uid=1002, gid=1002, pid=12, groups=frozenset({50}))      # in admin group 50 (supplementary)
OPER_PRIMARY = Peer(uid=1003, gid=50, pid=13)                       # admin group as primary gid
NOBODY = Peer(uid=65534, gid=65534, pid=14)
ADMIN_GID = 50

CASES = [
    # peer, op, target (real, effective), move_all, admin_gid, allowed, words in reason
    (ROOT, "migrate", (1000, 1000), False, None, True, "root"),
    (ROOT, "migrate", (0, 0), True, None, True, "root"),
    (ROOT, "drain", None, False, None, True, "root"),
    (ROOT, "reload", None, False, None, True, "root"),
    (ALICE, "migrate", (1000, 1000), False, None, True, "owns"),
    (ALICE, "query", (1000, 1000), False, None, True, "owns"),
    (ALICE, "migrate", (1000, 1000), True, None, False, "move-all"),
    (ALICE, "migrate", (1001, 1001), False, None, False, "real uid 1001"),
    (ALICE, "migrate", (0, 0), False, None, False, "real uid 0"),
    (ALICE, "migrate", (1000, 0), False, None, False, "effective uid 0"),      # setuid program
    (ALICE, "migrate", (0, 1000), False, None, False, "real uid 0"),
    (ALICE, "query", (1001, 1001), False, None, False, "own processes"),
    (ALICE, "migrate", None, False, None, False, "unknown"),
    (ALICE, "drain", None, False, None, False, "needs root or the admin group"),
    (ALICE, "reload", None, False, None, False, "needs root or the admin group"),
    (ALICE, "status", None, False, None, True, "open"),
    (ALICE, "plan", None, False, None, True, "open"),
    (ALICE, "cancel", None, False, None, True, "open"),
    (ALICE, "frobnicate", None, False, None, False, "unknown operation"),
    (NOBODY, "migrate", (0, 0), False, None, False, "uid 65534 may only migrate its own"),
    (NOBODY, "migrate", (65534, 65534), False, None, True, "owns"),
    (OPER, "migrate", (0, 0), True, ADMIN_GID, True, "admin group"),
    (OPER, "drain", None, False, ADMIN_GID, True, "admin group"),
    (OPER, "migrate", (0, 0), False, None, False, "own processes"),         # no admin group configured
    (OPER, "drain", None, False, 51, False, "needs root"),                  # another group
    (OPER_PRIMARY, "reload", None, False, ADMIN_GID, True, "admin group"),
    (BOB, "migrate", (1000, 1000), False, ADMIN_GID, False, "real uid 1000"),
]


@pytest.mark.parametrize("peer, op, target, move_all, admin_gid, allowed, words", CASES)
def test_table(peer, op, target, move_all, admin_gid, allowed, words):
    d = authorize(peer, op, target_uids=target, target_pid=42, move_all=move_all, admin_gid=admin_gid)
    assert bool(d) is allowed, d.reason
    assert words in d.reason


def test_is_admin():
    assert is_admin(ROOT, None)
    assert not is_admin(ALICE, None)
    assert is_admin(OPER, ADMIN_GID) and is_admin(OPER_PRIMARY, ADMIN_GID)
    assert not is_admin(OPER, None)


def test_reason_names_the_target_pid():
    d = authorize(ALICE, "migrate", target_uids=(0, 0), target_pid=4242)
    assert "process 4242" in d.reason
