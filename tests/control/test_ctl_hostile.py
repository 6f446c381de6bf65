# ruff: noqa: F811  (pytest fixtures imported from ctlkit are redefined as parameters)
"""Issue 18 items of the control plane, on the host with fakes: authorization race (3),
audit injection and audit coverage (4), unbounded queries (5), a target exiting (10)."""

from __future__ import annotations

import logging
import re
import threading
import time

from ctlkit import (ALICE, ROOT, FakeExecutor, FakeHost, as_peer, ask, audit_lines, connect,  # noqa: F401
                    make_server, read_messages, req, sockdir)
from numad_py.control import audit
from numad_py.control import protocol as P
from numad_py.errors import ProcessGone

FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|-?\d+)')


def parse_audit(line: str) -> list[tuple[str, str]]:
    """key=value pairs; the whole line must be made of them (nothing unquoted in between)."""
    pairs, pos = [], 0
    for m in FIELD.finditer(line):
        assert line[pos:m.start()].strip() == "", f"unquoted text {line[pos:m.start()]!r} in {line!r}"
        pairs.append((m.group(1), m.group(2)))
        pos = m.end()
    assert line[pos:].strip() == "", line
    return pairs


class ChangingHost(FakeHost):
    """A target whose credentials change after ``after`` reads (exec of a setuid program,
    pid reuse, or exit), the way a racing unprivileged user arranges it."""

    def __init__(self, pid: int, after: int, **change):
        super().__init__()
        self.pid, self.after, self.change = pid, after, change
        self.reads = 0

    def credentials(self, pid):
        if pid == self.pid:
            self.reads += 1
            if self.reads > self.after:
                if self.change.get("exit"):
                    raise ProcessGone(f"process {pid} is gone")
                if "uids" in self.change:
                    self.owners[pid] = self.change["uids"]
                if "start_time" in self.change:
                    self.start_times[pid] = self.change["start_time"]
                if self.change.get("undumpable"):
                    self.undumpable.add(pid)
        return super().credentials(pid)


# --- item 3: ownership and identity are one snapshot, re-checked every chunk -------------

def run_migrate(srv, rid="m"):
    with connect(srv) as s:
        s.sendall(P.encode(req("migrate", rid, pid=200, to=1, progress=False)))
        return read_messages(s)[-1]


def test_setuid_exec_during_a_request_ends_it_within_one_chunk(make_server, as_peer, caplog):
    ex = FakeExecutor(chunks=20, chunk_seconds=0.01)
    # Authorized on read 1; the executor's first chunk check is read 2; then euid 0.
    host = ChangingHost(200, after=3, uids=(1000, 0, 0), undumpable=True)
    srv = make_server(executor=ex, host=host)
    as_peer(ALICE)
    caplog.set_level(logging.INFO, logger="numad_py.audit")
    reply = run_migrate(srv)
    assert reply["ok"] is False and reply["error"]["code"] == "forbidden", reply
    assert "changed credentials" in reply["error"]["message"]
    assert ex.chunks_done == [2]          # two chunks were authorized, none after the change
    line = audit_lines(caplog)[-1]
    assert 'result="forbidden"' in line and "changed credentials" in line


def test_pid_reuse_during_a_request_is_gone_even_for_root(make_server, as_peer):
    ex = FakeExecutor(chunks=20, chunk_seconds=0.01)
    host = ChangingHost(200, after=2, start_time=99.0)
    srv = make_server(executor=ex, host=host)
    as_peer(ROOT)
    reply = run_migrate(srv)
    assert reply["error"]["code"] == "gone" and "pid was reused" in reply["error"]["message"]
    assert ex.chunks_done == [1]


def test_uid_change_does_not_stop_an_admin_request(make_server, as_peer):
    ex = FakeExecutor(chunks=5)
    srv = make_server(executor=ex, host=ChangingHost(200, after=2, uids=(0, 0, 0)))
    as_peer(ROOT)
    assert run_migrate(srv)["result"]["status"] == "done" and ex.chunks_done == [5]


def test_saved_uid_and_dumpable_must_match_for_non_admins(make_server, as_peer):
    ex = FakeExecutor()
    host = FakeHost()
    host.owners[201] = (1000, 1000, 0)       # dropped euid but kept a saved root uid
    host.owners[202] = (1000, 1000, 1000)
    host.undumpable.add(202)                  # ran a setuid program that fully dropped
    srv = make_server(executor=ex, host=host)
    as_peer(ALICE)
    r = ask(srv, req("migrate", pid=201, to=1))
    assert r["error"]["code"] == "forbidden" and "saved uid 0" in r["error"]["message"]
    r = ask(srv, req("migrate", pid=202, to=1))
    assert r["error"]["code"] == "forbidden" and "not dumpable" in r["error"]["message"]
    assert ask(srv, req("query", pid=201))["error"]["code"] == "forbidden"
    assert ex.calls == []


# --- item 10: a target that exits mid-request is `gone` ------------------------------------

def test_target_exiting_between_checks_is_gone_not_internal(make_server, as_peer, caplog):
    for after in (1, 2):      # exits right after authorization, or after the first chunk
        srv = make_server(executor=FakeExecutor(chunks=3), host=ChangingHost(200, after=after, exit=True))
        as_peer(ALICE)
        caplog.clear()
        caplog.set_level(logging.INFO)
        reply = run_migrate(srv)
        assert reply["error"]["code"] == "gone", reply
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]   # no traceback
        srv.stop()


# --- item 4: audit lines cannot be forged, and every refusal has one ------------------------

def test_forged_id_stays_inside_its_quotes(make_server, as_peer, caplog):
    srv = make_server()
    as_peer(ALICE)
    caplog.set_level(logging.INFO, logger="numad_py.audit")
    forged = 'x" result=done bytes_moved=67108864 id="y'
    assert ask(srv, req("migrate", forged, pid=100, to=1, mapping='a" result="done'))["error"]["code"] \
        == "forbidden"
    (line,) = audit_lines(caplog)
    pairs = parse_audit(line)
    keys = [k for k, _ in pairs]
    assert keys.count("result") == 1 and dict(pairs)["result"] == '"forbidden"'
    assert "bytes_moved" not in keys
    assert dict(pairs)["id"] == '"x\\" result=done bytes_moved=67108864 id=\\"y"'


def test_quote_escapes_control_characters():
    assert audit.quote('a"b\\c\nd\x01') == '"a\\"b\\\\c\\nd\\x01"'
    assert audit.quote(42) == "42" and audit.quote(True) == '"True"'
    assert parse_audit(audit.line({"id": "\u2028 x=1", "n": 3})) == [("id", '"\\u2028 x=1"'), ("n", "3")]


def test_every_refused_placement_request_is_audited(make_server, as_peer, caplog):
    srv = make_server(executor=FakeExecutor(chunks=30, chunk_seconds=0.02), max_inflight=1)
    caplog.set_level(logging.INFO, logger="numad_py.audit")
    as_peer(ALICE)
    refused = [
        req("migrate", "forbidden", pid=100, to=1),
        req("migrate", "gone", pid=999, to=1),
        req("migrate", "badnode", pid=200, to=7),
        req("migrate", "nomap", pid=200, to=1, mapping="/nope"),
        req("migrate", "badpid", pid="12", to=1),                  # refused by the parser
        req("migrate", "extra", pid=200, to=1, junk=1),
        req("drain", "drain", node=1),
        req("drain", "baddrain", node="x"),
        req("reload", "reload"),
        req("query", "query", pid=100),
        req("query", "badquery", pid=200, range="zz"),
        {"v": 2, "id": "version", "op": "migrate", "pid": 200, "to": 1},
    ]
    for message in refused:
        assert ask(srv, message)["ok"] is False, message
    # capacity refusals: a second request while one runs (limit 1), and a duplicate id
    with connect(srv) as s:
        s.sendall(P.encode(req("migrate", "long", pid=200, to=1, progress=False)))
        time.sleep(0.1)
        s.sendall(P.encode(req("migrate", "busy", pid=200, to=1)))
        assert read_messages(s)[-1]["error"]["code"] == "busy"
        assert ask(srv, req("migrate", "long", pid=200, to=1))["error"]["code"] == "bad_request"
        assert ask(srv, req("cancel", "c", request="long"))["ok"]
        read_messages(s)
    lines = audit_lines(caplog)
    ids = {dict(parse_audit(line))["id"].strip('"') for line in lines}
    expected = {m["id"] for m in refused} | {"busy", "long"}
    assert expected <= ids, expected - ids
    for line in lines:
        fields = dict(parse_audit(line))
        assert fields["result"] != '"done"' and fields["peer_uid"] == "1000"


# --- item 5: a query of a huge range is bounded and stops with its client ----------------------

def test_huge_range_query_stops_when_the_client_goes(make_server):
    host = FakeHost()
    srv = make_server(host=host)
    threads = threading.active_count()
    s = connect(srv)
    s.sendall(P.encode(req("query", "q", pid=200, range="0-ffffffffffff")))
    deadline = time.monotonic() + 5
    while host.query_chunks < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert host.query_chunks >= 5
    s.close()
    time.sleep(0.3)
    stopped_at = host.query_chunks
    time.sleep(0.3)
    assert host.query_chunks <= stopped_at + 1, "the query ran on after its client left"
    assert ask(srv, req("status"))["ok"]
    assert threading.active_count() <= threads + 1    # no thread per request


def test_half_closed_client_still_gets_its_query(make_server):
    srv = make_server()
    with connect(srv) as s:
        s.sendall(P.encode(req("query", "q", pid=200)))
        s.shutdown(1)     # SHUT_WR: not gone, it waits for the answer
        assert read_messages(s)[-1]["result"]["nodes"] == {"0": 4096}
