"""The socket's ``advise`` op (issue 15): libvirt asks before each VM start, so two VMs
started together must not be sent to the same node; what an admin was advised is reserved
for a while, and nobody else's asking can steer it."""

from __future__ import annotations

from ctlkit import ALICE, ROOT, FakeHost, ask, as_peer, make_server, req, sockdir  # noqa: F401

from numad_py.control import protocol as P
from numad_py.decide.advise import ReservationBook

GiB = 1 << 30


def test_advice_comes_with_reasons_and_a_numactl_node_list(make_server, as_peer):  # noqa: F811
    as_peer(ROOT)
    host = FakeHost()
    srv = make_server(host=host)
    reply = ask(srv, req("advise", cpus=2, memory=5 * GiB))
    assert reply["ok"], reply
    result = reply["result"]
    assert result["nodelist"] == "1" and result["nodes"] == [1]      # only node 1 has 5 GiB free
    assert result["fits"] and "node 1 alone fits" in result["reasons"][0]
    assert result["reserved_seconds"] > 0 and host.snapshots == 1


def test_two_vms_asking_together_get_different_nodes(make_server, as_peer):  # noqa: F811
    as_peer(ROOT)
    srv = make_server()
    first = ask(srv, req("advise", "a", cpus=2, memory=3 * GiB))["result"]
    second = ask(srv, req("advise", "b", cpus=2, memory=3 * GiB))["result"]
    # Node 1 (6 GiB free) wins first; with its 3 GiB and 2 CPUs reserved, node 0 is best next.
    assert first["nodelist"] == "1" and second["nodelist"] == "0", (first, second)


def test_a_user_is_advised_but_reserves_nothing(make_server, as_peer):  # noqa: F811
    as_peer(ALICE)
    srv = make_server()
    first = ask(srv, req("advise", "a", cpus=2, memory=3 * GiB))["result"]
    second = ask(srv, req("advise", "b", cpus=2, memory=3 * GiB))["result"]
    assert first["nodelist"] == second["nodelist"] == "1"
    assert first["reserved_seconds"] == 0


def test_reserve_false_asks_without_holding_anything(make_server, as_peer):  # noqa: F811
    as_peer(ROOT)
    srv = make_server()
    for rid in ("a", "b"):
        result = ask(srv, req("advise", rid, cpus=2, memory=3 * GiB, reserve=False))["result"]
        assert result["nodelist"] == "1" and result["reserved_seconds"] == 0


def test_bad_advise_input_is_a_clear_error(make_server):  # noqa: F811
    srv = make_server()
    for bad, words in [({"cpus": 0}, "cpus"), ({"cpus": "2"}, "cpus"), ({"cpus": 1, "memory": -1}, "memory"),
                       ({}, 'missing field "cpus"')]:
        reply = ask(srv, req("advise", **bad))
        assert not reply["ok"] and reply["error"]["code"] == "bad_request", reply
        assert words in reply["error"]["message"], reply


def test_reservations_expire_and_are_bounded():
    book = ReservationBook(ttl=30, limit=3)
    book.add(frozenset({0, 1}), 2, 2 * GiB, now=0)
    assert book.active(10) == {0: book.active(10)[0], 1: book.active(10)[1]}
    assert book.active(10)[0].cpus == 1.0 and book.active(10)[1].bytes == GiB
    assert book.active(31) == {}
    for i in range(5):
        book.add(frozenset({0}), 1, 0, now=100 + i)
    assert book.active(105)[0].cpus == 3.0            # only the newest 3 kept


def test_advise_is_a_known_op():
    assert "advise" in P.OPS and "advise" not in P.ADMIN_OPS
