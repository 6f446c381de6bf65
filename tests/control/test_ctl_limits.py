# ruff: noqa: F811  (pytest fixtures imported from ctlkit are redefined as parameters)
"""Connection limits (issue 18 item 7): per-uid share, slowloris, every refusal answered
``busy``, no slot leaks, a fixed number of threads, stop() always clean."""

from __future__ import annotations

import os
import resource
import threading
import time

from ctlkit import (ALICE, ROOT, FakeExecutor, FakeHost, as_peer, ask, connect, make_server,  # noqa: F401
                    read_messages, req, sockdir)
from numad_py.control import protocol as P
from numad_py.control import transport as transport_mod
from numad_py.control.auth import Peer

BOB = Peer(uid=1001, gid=1001, pid=4001)


def wait_for(cond, seconds=5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_one_uid_cannot_take_every_slot(make_server, as_peer):
    srv = make_server(max_connections=20, admin_reserve=2, max_per_uid=4, read_timeout=5.0)
    as_peer(ALICE)
    held = [connect(srv) for _ in range(4)]
    assert wait_for(lambda: len(srv.transport.conns) == 4)
    with connect(srv) as s:
        r = read_messages(s)[-1]
    assert r["error"]["code"] == "busy" and "from uid 1000" in r["error"]["message"]
    as_peer(BOB)                              # another uid still gets in
    assert ask(srv, req("status"))["ok"]
    for s in held:
        s.close()
    assert wait_for(lambda: not srv.transport.conns and not srv.transport._per_uid)


def test_slowloris_partial_data_does_not_keep_a_slot(make_server):
    srv = make_server(read_timeout=0.6)
    s = connect(srv)
    t0 = time.monotonic()
    closed = None
    for _ in range(40):                       # one byte every 0.1 s, never a newline
        try:
            s.sendall(b"{")
            if s.recv(4096, 0x40):            # MSG_DONTWAIT: the error line arrived
                closed = time.monotonic() - t0
                break
        except BlockingIOError:
            pass
        except OSError:
            closed = time.monotonic() - t0
            break
        time.sleep(0.1)
    assert closed is not None and closed < 1.5, closed
    assert wait_for(lambda: not srv.transport.conns)
    s.close()


def test_blank_lines_are_no_keep_alive(make_server):
    srv = make_server(read_timeout=0.5)
    s = connect(srv)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3:
        try:
            s.sendall(b"\n")
        except OSError:
            break
        time.sleep(0.1)
    assert time.monotonic() - t0 < 1.5
    assert wait_for(lambda: not srv.transport.conns)
    s.close()


def test_flood_every_client_gets_a_reply_or_busy_and_no_slot_leaks(make_server, as_peer):
    srv = make_server(max_connections=16, admin_reserve=0, read_timeout=5.0,
                      executor=FakeExecutor(chunks=2, chunk_seconds=0.01))
    outcomes: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            with connect(srv) as s:
                try:
                    s.sendall(P.encode(req("migrate", f"c{i}", pid=200, to=1) if i % 3
                                       else req("status", f"c{i}")))
                except BrokenPipeError:
                    pass          # refused before our line went out: the busy line is still there
                msgs = read_messages(s)
                got = msgs[-1]["error"]["code"] if msgs and not msgs[-1]["ok"] else ("ok" if msgs else "nothing")
        except OSError as exc:
            got = f"oserror {exc}"
        with lock:
            outcomes.append(got)

    for _round in range(3):
        threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(outcomes) == 300
    assert set(outcomes) <= {"ok", "busy"}, {o for o in outcomes if o not in ("ok", "busy")}
    assert wait_for(lambda: not srv.transport.conns)       # every slot came back
    assert ask(srv, req("status"))["ok"]


def test_threads_are_fixed_whatever_the_connections(make_server):
    before = threading.active_count()
    srv = make_server(executor=FakeExecutor(chunks=3, chunk_seconds=0.02))
    conns = [connect(srv) for _ in range(100)]
    for i, s in enumerate(conns):
        s.sendall(P.encode(req("migrate", f"m{i}", pid=200, to=1, progress=False)))
    time.sleep(0.3)
    assert threading.active_count() - before <= 1 + srv.workers
    for s in conns:
        s.close()


def test_stop_with_jobs_and_connections_is_clean(make_server, sockdir):
    before, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))
    srv = make_server(executor=FakeExecutor(chunks=1000, chunk_seconds=0.01))
    busy = connect(srv)
    busy.sendall(P.encode(req("migrate", "long", pid=200, to=1)))
    idle = [connect(srv) for _ in range(20)]
    busy.recv(100)                                            # the job runs (a progress event)
    t0 = time.monotonic()
    srv.stop()
    srv.stop()                                                # twice is fine
    assert time.monotonic() - t0 < 3
    final = read_messages(busy)[-1]
    assert final["ok"] and final["result"]["status"] == "cancelled"
    assert all(s.recv(100) == b"" for s in idle)              # every connection closed
    assert not (sockdir / "c.sock").exists()
    for s in [busy, *idle]:
        s.close()
    assert threading.active_count() == before
    assert len(os.listdir("/proc/self/fd")) == fds


def test_max_connections_stays_inside_the_open_file_limit(monkeypatch):
    monkeypatch.setattr(resource, "getrlimit", lambda what: (1024, 4096))
    assert transport_mod._within_fd_limit(2048) == 1024 - transport_mod.FD_HEADROOM
    assert transport_mod._within_fd_limit(100) == 100


def test_root_is_not_held_to_the_per_uid_share(make_server, as_peer):
    srv = make_server(max_connections=20, admin_reserve=2, max_per_uid=2)
    as_peer(ROOT)
    held = [connect(srv) for _ in range(6)]
    assert wait_for(lambda: len(srv.transport.conns) == 6)
    assert ask(srv, req("status"))["ok"]
    for s in held:
        s.close()


class CountingHost(FakeHost):
    """A host whose queries take a while and record how many ran at once."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.running = self.most_at_once = self.finished = 0

    def query(self, pid, range_text, cancelled=lambda: False):
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
            self.finished += 1
        return super().query(pid, range_text, cancelled)


def test_sensing_runs_one_call_at_a_time_and_status_answers_meanwhile(make_server, as_peer):
    # Sensing is Python under the GIL: more at once adds no throughput, only threads the
    # loop must win the GIL back from (status then waited seconds in the 2-node guest).
    host = CountingHost()
    srv = make_server(host=host, workers=4)
    as_peer(ROOT)
    replies: list[dict] = []
    clients = [threading.Thread(target=lambda i=i: replies.append(ask(srv, req("query", f"q{i}", pid=100))))
               for i in range(8)]
    for t in clients:
        t.start()
    assert wait_for(lambda: host.finished >= 1)      # the queries are queued behind one another
    status = ask(srv, req("status", "s"))
    finished_at_status = host.finished
    for t in clients:
        t.join(10)
    assert status["ok"] and finished_at_status < 8, (status, finished_at_status)
    assert [r["ok"] for r in replies] == [True] * 8, replies
    assert host.most_at_once == 1
