# ruff: noqa: F811  (pytest fixtures imported from ctlkit are redefined as parameters)
"""The control server over a real Unix socket, with a fake host and executor (no kernel)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import stat
import threading
import time

import pytest

from ctlkit import (ALICE, ROOT, MiB, FakeExecutor, FakeHost, as_peer, ask, audit_lines, connect,  # noqa: F401
                    make_server, read_messages, req, sockdir)
from numad_py.cli import entry as cli
from numad_py.cli import requests as cli_requests
from numad_py.cli.argv import ArgumentParser
from numad_py.client import BadRequest, Client, DaemonUnavailable, Forbidden, Gone, NotFound
from numad_py.control import protocol as P
from numad_py.control import transport as transport_mod
from numad_py.control.auth import Peer
from numad_py.control.connection import Outbox
from numad_py.control.server import ControlServer, SocketInUse, SocketPathError


# --- basic replies -------------------------------------------------------------------------

def test_status_plan_and_real_peer_credentials(make_server):
    srv = make_server()
    reply = ask(srv, req("status"))
    assert reply == {"v": 1, "id": "r1", "ok": True, "result": {"pid": os.getpid(), "ticks": 3}}
    assert ask(srv, req("plan"))["result"] == {"actions": [{"kind": "migrate", "pid": 1}]}
    with connect(srv) as s:
        peer = transport_mod.peer_credentials(s)   # the server end sees us; check the call works
        assert peer.pid == os.getpid() and peer.uid == os.getuid()


def test_malformed_json_then_the_connection_still_works(make_server):
    srv = make_server()
    with connect(srv) as s:
        s.sendall(b"{not json\n" + P.encode(req("status", "after")))
        first, second = read_messages(s, 2)
    assert first["ok"] is False and first["error"]["code"] == "bad_request"
    assert "malformed JSON" in first["error"]["message"] and first["id"] is None
    assert second["ok"] and second["id"] == "after"


def test_unknown_op_and_wrong_types(make_server):
    srv = make_server()
    r = ask(srv, req("explode"))
    assert r["error"]["code"] == "unknown_op" and r["id"] == "r1"
    r = ask(srv, req("migrate", pid="12", to=1))
    assert r["error"]["code"] == "bad_request" and "pid" in r["error"]["message"]
    r = ask(srv, req("migrate", pid=200, to=[7]))
    assert r["error"]["code"] == "bad_request" and "does not exist" in r["error"]["message"]


def test_over_long_line_is_refused_and_server_keeps_serving(make_server):
    srv = make_server(max_line=1024)
    with connect(srv) as s:
        try:
            s.sendall(b"x" * 5000)
        except OSError:
            pass
        msgs = read_messages(s)
        assert msgs[-1]["error"]["code"] == "too_large"
        assert s.recv(100) == b""  # and the connection was closed
    assert ask(srv, req("status"))["ok"]


def test_half_closed_client_gets_its_replies(make_server):
    srv = make_server(executor=FakeExecutor(chunks=3, chunk_seconds=0.05))
    with connect(srv) as s:
        s.sendall(P.encode(req("migrate", "m", pid=200, to=1)) + P.encode(req("status", "s"))[:-1])
        s.shutdown(socket.SHUT_WR)   # the status line has no newline: it still counts
        msgs = read_messages(s, 2)
    finals = {m["id"]: m for m in msgs if "event" not in m}
    assert finals["s"]["ok"] and finals["m"]["ok"]
    assert finals["m"]["result"]["status"] == "done"
    done = [m["done_bytes"] for m in msgs if m.get("event") == "progress"]
    assert done and done[-1] == 3 * MiB   # intermediate events may be coalesced under load


def test_slow_client_does_not_block_others_and_is_timed_out(make_server):
    srv = make_server(read_timeout=1.0)
    slow = connect(srv)
    slow.sendall(b'{"v":1,"id":"slow","op":"sta')      # and then nothing
    t0 = time.monotonic()
    assert ask(srv, req("status"))["ok"]
    assert time.monotonic() - t0 < 0.5
    msgs = read_messages(slow)
    assert msgs[-1]["error"]["code"] == "bad_request"
    assert "no newline within" in msgs[-1]["error"]["message"]
    slow.close()


def test_idle_connection_is_closed(make_server):
    srv = make_server(read_timeout=0.5)
    with connect(srv) as s:
        assert s.recv(10) == b""


def test_fifty_concurrent_clients_all_answered(make_server):
    srv = make_server(executor=FakeExecutor(chunks=2, chunk_seconds=0.001))
    results: dict[int, dict] = {}
    barrier = threading.Barrier(50)

    def one(i: int) -> None:
        with connect(srv) as s:
            barrier.wait()
            op = req("migrate", f"c{i}", pid=200, to=1) if i % 2 else req("status", f"c{i}")
            s.sendall(P.encode(op))
            results[i] = read_messages(s)[-1]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 50
    assert all(r["ok"] and r["id"] == f"c{i}" for i, r in results.items()), results


def test_connection_flood_is_refused_cleanly_and_serving_continues(make_server):
    srv = make_server(max_connections=8, admin_reserve=0, read_timeout=5.0)
    held = [connect(srv) for _ in range(8)]
    time.sleep(0.2)
    refused = []
    for _ in range(20):
        s = connect(srv)   # the kernel accepts into the backlog; the server answers busy and closes
        refused.append(read_messages(s)[-1])
        s.close()
    assert all(r["error"]["code"] == "busy" and "too many connections" in r["error"]["message"]
               for r in refused)
    assert srv.refused_connections == 20
    # the held connections still work
    held[0].sendall(P.encode(req("status", "held")))
    assert read_messages(held[0])[-1]["ok"]
    for s in held:
        s.close()
    deadline = time.monotonic() + 5
    reply = {"ok": False}
    while time.monotonic() < deadline:
        try:
            reply = ask(srv, req("status"))
        except (BrokenPipeError, ConnectionResetError):
            # The server may not have seen the held sockets close yet: it
            # answered busy and hung up before our request went out.
            reply = {"ok": False}
        if reply["ok"]:
            break
        time.sleep(0.05)
    assert reply["ok"]


def test_admin_reserve_keeps_room_for_root(make_server, as_peer):
    srv = make_server(max_connections=4, admin_reserve=2)
    as_peer(ALICE)
    users = [connect(srv) for _ in range(2)]
    time.sleep(0.1)
    with connect(srv) as s:
        assert read_messages(s)[-1]["error"]["code"] == "busy"
    as_peer(Peer(uid=0, gid=0, pid=1))
    assert ask(srv, req("status"))["ok"]
    for s in users:
        s.close()


# --- placement requests ---------------------------------------------------------------------

def test_migrate_progress_result_and_audit(make_server, caplog):
    ex = FakeExecutor(chunks=4)
    srv = make_server(executor=ex)
    caplog.set_level(logging.INFO, logger="numad_py.audit")
    with connect(srv) as s:
        s.sendall(P.encode(req("migrate", "m1", pid=200, to="1", range="7f00-7f80", mapping="[heap]")))
        msgs = read_messages(s)
    events = [m for m in msgs if m.get("event") == "progress"]
    done = [e["done_bytes"] for e in events]
    # A slow reader may see intermediate events coalesced (the latest wins),
    # but they only ever rise, come from real chunk boundaries, and end at the total.
    assert done == sorted(set(done)) and set(done) <= {MiB, 2 * MiB, 3 * MiB, 4 * MiB}
    assert done[-1] == 4 * MiB
    assert all(e["total_bytes"] == 4 * MiB and e["id"] == "m1" for e in events)
    final = msgs[-1]
    assert final["ok"] and final["result"]["status"] == "done"
    assert final["result"]["result"]["pages_failed"] == {"shared": 3}
    action, reason = ex.calls[0]
    assert reason == "request" and action.pid == 200 and action.target_nodes == frozenset({1})
    assert ex.uids == [os.getuid()]          # the executor's turns are per requesting uid
    assert action.memory == ("7f00-7f80", "[heap]") and action.start_time == 1.0
    lines = audit_lines(caplog)
    assert len(lines) == 1
    assert f'peer_uid={os.getuid()} peer_pid={os.getpid()} op="migrate" id="m1" pid=200 to="1"' in lines[0]
    assert 'result="done"' in lines[0] and 'failed="shared:3"' in lines[0]


def test_outbox_coalesces_progress_but_keeps_order_and_messages():
    async def drain() -> list[dict]:
        box = Outbox()
        box.put({"n": 1})
        for done in (1, 2, 3):
            box.put_progress("a", P.progress("a", done, 3))
        box.put_progress("b", P.progress("b", 5, 9))
        box.put({"n": 2})
        box.close()
        sent = []
        while (data := await box.get()) is not None:
            sent.append(json.loads(data))
        return sent

    sent = asyncio.run(drain())
    assert sent[0] == {"n": 1}
    # one event per request id, holding its latest value, in first-queued order
    assert [(m["id"], m["done_bytes"]) for m in sent[1:3]] == [("a", 3), ("b", 5)]
    assert sent[3] == {"n": 2}


def test_progress_false_sends_no_events(make_server):
    srv = make_server()
    with connect(srv) as s:
        s.sendall(P.encode(req("migrate", "m", pid=200, to=1, progress=False)))
        msgs = read_messages(s)
    assert len(msgs) == 1 and msgs[0]["ok"]


def test_user_refused_for_root_process_allowed_for_own(make_server, as_peer, caplog):
    ex = FakeExecutor()
    srv = make_server(executor=ex)
    as_peer(ALICE)
    caplog.set_level(logging.INFO, logger="numad_py.audit")
    r = ask(srv, req("migrate", "bad", pid=100, to=1))
    assert r["error"]["code"] == "forbidden"
    assert "uid 1000 may only migrate its own processes; process 100 runs as real uid 0" in r["error"]["message"]
    r = ask(srv, req("migrate", "setuid", pid=300, to=1))
    assert r["error"]["code"] == "forbidden" and "effective uid 0" in r["error"]["message"]
    r = ask(srv, req("migrate", "all", pid=200, to=1, move_all=True))
    assert r["error"]["code"] == "forbidden" and "move-all" in r["error"]["message"]
    r = ask(srv, req("migrate", "own", pid=200, to=1))
    assert r["ok"] and r["result"]["status"] == "done"
    r = ask(srv, req("drain", "d", node=1))
    assert r["error"]["code"] == "forbidden"
    r = ask(srv, req("reload", "rl"))
    assert r["error"]["code"] == "forbidden"
    assert [a.pid for a, _ in ex.calls] == [200]
    lines = audit_lines(caplog)
    assert len(lines) == 6
    assert 'peer_uid=1000 peer_pid=4000 op="migrate" id="bad" pid=100' in lines[0]
    assert 'result="forbidden" reason="uid 1000 may only migrate' in lines[0]
    assert 'result="done"' in lines[3]


def test_gone_not_found_and_query(make_server, as_peer):
    srv = make_server()
    assert ask(srv, req("migrate", pid=999, to=1))["error"]["code"] == "gone"
    r = ask(srv, req("migrate", pid=200, to=1, mapping="/nope/*"))
    assert r["error"]["code"] == "not_found" and "'/nope/*'" in r["error"]["message"]
    assert ask(srv, req("query", pid=100))["result"] == {"pid": 100, "nodes": {"0": 4096}}
    as_peer(ALICE)
    assert ask(srv, req("query", pid=100))["error"]["code"] == "forbidden"
    assert ask(srv, req("query", pid=200))["ok"]


def test_cancel_stops_within_one_chunk(make_server):
    ex = FakeExecutor(chunks=50, chunk_seconds=0.05)
    srv = make_server(executor=ex)
    with connect(srv) as s:
        s.sendall(P.encode(req("migrate", "long", pid=200, to=1)))
        # wait for the first progress event
        buf = b""
        while b"\n" not in buf:
            buf += s.recv(4096)
        t_cancel = time.monotonic()
        assert ask(srv, req("cancel", "c", request="long"))["result"] == {"request": "long", "cancelling": 1}
        msgs = read_messages(s)
    final = msgs[-1]
    assert final["ok"] and final["result"]["status"] == "cancelled"
    assert time.monotonic() - t_cancel < 0.5
    assert ex.chunks_done[0] < 50


def test_cancel_only_own_requests(make_server, as_peer):
    srv = make_server(executor=FakeExecutor(chunks=40, chunk_seconds=0.05))
    with connect(srv) as s:
        s.sendall(P.encode(req("migrate", "roots", pid=100, to=1)))
        buf = b""
        while b"\n" not in buf:
            buf += s.recv(4096)
        as_peer(ALICE)
        r = ask(srv, req("cancel", "c", request="roots"))
        assert r["error"]["code"] == "not_found" and "of uid 1000" in r["error"]["message"]
        as_peer(Peer(uid=0, gid=0, pid=1))
        assert ask(srv, req("cancel", "c", request="roots"))["ok"]
        assert read_messages(s)[-1]["result"]["status"] == "cancelled"
    assert ask(srv, req("cancel", "c", request="nothing"))["error"]["code"] == "not_found"


def test_duplicate_running_id_and_inflight_limit(make_server):
    srv = make_server(executor=FakeExecutor(chunks=20, chunk_seconds=0.05), max_inflight=2)
    with connect(srv) as s:
        s.sendall(P.encode(req("migrate", "a", pid=200, to=1, progress=False)))
        time.sleep(0.1)
        s.sendall(P.encode(req("migrate", "a", pid=200, to=1)))
        dup = read_messages(s)[-1]
        assert dup["error"]["code"] == "bad_request" and "already running" in dup["error"]["message"]
        s.sendall(P.encode(req("migrate", "b", pid=200, to=1, progress=False)))
        s.sendall(P.encode(req("migrate", "c", pid=200, to=1, progress=False)))
        busy = read_messages(s)[-1]
        assert busy["id"] == "c" and busy["error"]["code"] == "busy"
        done = read_messages(s, 2)
        assert sorted(m["id"] for m in done) == ["a", "b"]


def test_drain_as_root(make_server):
    ex = FakeExecutor(chunks=2)
    host = FakeHost()
    srv = make_server(executor=ex, host=host)
    with connect(srv) as s:
        s.sendall(P.encode(req("drain", "d", node=1)))
        msgs = read_messages(s)
    assert msgs[-1]["ok"] and msgs[-1]["result"]["status"] == "done"
    assert [r for _, r in ex.calls] == ["drain", "drain"] and host.drained == [1]
    assert ask(srv, req("drain", node=5))["error"]["code"] == "bad_request"


@pytest.mark.parametrize("op", ["migrate", "drain"])
def test_request_stops_within_a_chunk_when_its_client_goes(make_server, caplog, op):
    ex = FakeExecutor(chunks=40, chunk_seconds=0.05)
    srv = make_server(executor=ex, host=FakeHost())
    caplog.set_level(logging.INFO, logger="numad_py.audit")
    s = connect(srv)
    fields = {"pid": 200, "to": 1} if op == "migrate" else {"node": 0}
    s.sendall(P.encode(req(op, "x", progress=False, **fields)))
    time.sleep(0.2)
    s.close()
    deadline = time.monotonic() + 5
    while not audit_lines(caplog) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Stopped after the chunk in flight when the client left: nowhere near all 40 (drain: per process).
    assert ex.chunks_done and all(done < 10 for done in ex.chunks_done), ex.chunks_done
    line = audit_lines(caplog)[-1]
    assert f'op="{op}"' in line and 'result="cancelled"' in line and "client went away" in line, line
    assert ask(srv, req("status"))["ok"]


def test_half_closed_client_still_gets_its_migrate_reply(make_server):
    ex = FakeExecutor(chunks=5, chunk_seconds=0.05)
    srv = make_server(executor=ex)
    with connect(srv) as s:
        s.sendall(P.encode(req("migrate", "x", pid=200, to=1, progress=False)))
        s.shutdown(socket.SHUT_WR)
        reply = read_messages(s)[-1]
    assert reply["ok"] and reply["result"]["status"] == "done" and ex.chunks_done == [5]


def test_internal_error_in_status_is_an_error_reply(make_server):
    def broken():
        raise RuntimeError("boom")
    srv = make_server(status=broken)
    r = ask(srv, req("status"))
    assert r["error"]["code"] == "internal" and "boom" in r["error"]["message"]
    assert ask(srv, req("plan"))["ok"]


# --- the socket file -------------------------------------------------------------------------

def test_socket_mode_and_stale_socket(sockdir, make_server):
    path = sockdir / "c.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()                      # a socket file nobody listens on
    srv = make_server(mode="0660")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    assert ask(srv, req("status"))["ok"]
    threads = threading.active_count()
    with pytest.raises(SocketInUse, match=f"in use by pid {os.getpid()} "):
        ControlServer(str(path), executor=FakeExecutor()).start()
    assert threading.active_count() == threads          # nothing left behind
    assert ask(srv, req("status"))["ok"]                # and the first one still serves
    srv.stop()
    assert not path.exists()


def test_refuses_to_replace_a_regular_file(sockdir):
    path = sockdir / "c.sock"
    path.write_text("important")
    with pytest.raises(SocketPathError, match="not a socket"):
        ControlServer(str(path), executor=FakeExecutor()).start()
    assert path.read_text() == "important"


def test_unknown_group_is_a_clear_error(sockdir):
    with pytest.raises(ValueError, match="group 'no-such-group-xyz' does not exist"):
        ControlServer(str(sockdir / "c.sock"), executor=FakeExecutor(), group="no-such-group-xyz")


# --- client API and CLI functions --------------------------------------------------------------

def test_client_api(make_server, as_peer):
    srv = make_server(executor=FakeExecutor(chunks=3))
    c = Client(srv.socket_path)
    seen = []
    out = c.migrate(200, to=1, mapping="[heap]", progress=lambda d, t: seen.append((d, t)))
    assert out["status"] == "done" and seen[-1] == (3 * MiB, 3 * MiB)
    assert c.status()["ticks"] == 3
    assert c.query(100)["nodes"] == {"0": 4096}
    with pytest.raises(Gone):
        c.migrate(999, to=1)
    with pytest.raises(BadRequest):
        c.migrate(200, to=9)
    with pytest.raises(NotFound):
        c.cancel("nothing")
    as_peer(ALICE)
    with pytest.raises(Forbidden, match="its own processes"):
        c.migrate(100, to=1)
    with pytest.raises(DaemonUnavailable, match="is numad-py running"):
        Client(srv.socket_path + ".missing").status()


def test_client_move_buffer_via_daemon(make_server):
    ex = FakeExecutor(chunks=1)
    srv = make_server(executor=ex)
    ex_host = srv.host
    ex_host.owners[os.getpid()] = (os.getuid(), os.geteuid(), os.geteuid())
    import mmap
    buf = mmap.mmap(-1, 3 * 4096)
    out = Client(srv.socket_path).move_buffer(buf, 1)
    assert out["status"] == "done"
    action = ex.calls[0][0]
    start, end = (int(x, 16) for x in action.memory[0].split("-"))
    assert action.pid == os.getpid() and end - start == 3 * 4096 and start % 4096 == 0


def test_cli_migrate_via_daemon_and_drain(make_server, capsys):
    srv = make_server(executor=FakeExecutor(chunks=2))
    ns = argparse.Namespace(pid="200", to="1", range=None, mapping="[heap]", all=False, json=True,
                            socket=srv.socket_path, no_progress=True)
    assert cli_requests.migrate_via_daemon(ns) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "done"
    ns.json = False
    assert cli_requests.migrate_via_daemon(ns) == 0
    assert "pid 200 (proc200) -> node 1: done; moved 512 pages" in capsys.readouterr().out
    ns.pid = "999"
    assert cli_requests.migrate_via_daemon(ns) == 1
    assert "gone" in capsys.readouterr().err
    ns.pid, ns.to = "200", "7"
    assert cli_requests.migrate_via_daemon(ns) == 2
    d = argparse.Namespace(node=1, to=None, all=False, json=False, socket=srv.socket_path, no_progress=True)
    assert cli_requests.drain_main(d) == 0
    assert "drain node 1" in capsys.readouterr().out
    assert cli_requests.status_via_socket(srv.socket_path)["ticks"] == 3
    assert cli_requests.status_via_socket(srv.socket_path + ".none") is None


def test_cli_parsers_accept_the_documented_options():
    p = ArgumentParser()
    cli.add_drain_arguments(p)
    a = p.parse_args(["--node", "2", "--to", "0-1", "--json"])
    assert (a.node, a.to, a.json, a.all) == (2, "0-1", True, False)
    m = ArgumentParser()
    cli.add_via_daemon_arguments(m)
    a = m.parse_args(["--via-daemon", "--socket", "/x"])
    assert a.via_daemon and a.socket == "/x"
