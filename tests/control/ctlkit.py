"""Shared pieces of the control tests: a fake executor and host, a server fixture, a tiny client.

The fakes stand in for pure logic only (no kernel): the executor is chunked
with progress and cancel like the real one; the host answers credentials
as one snapshot like ``control.credentials.credentials``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from numad_py.act.executor import Outcome
from numad_py.control import protocol as P
from numad_py.control import transport as transport_mod
from numad_py.control.auth import Peer
from numad_py.control.credentials import Credentials
from numad_py.control.server import ControlServer
from numad_py.decide.snapshot import NodeInfo, Snapshot
from numad_py.errors import InvalidNode, ProcessGone
from numad_py.nodes import parse_nodes
from numad_py.numa import MigrationResult

MiB = 1 << 20
ALICE = Peer(uid=1000, gid=1000, pid=4000)
ROOT = Peer(uid=0, gid=0, pid=1)


class FakeExecutor:
    """Like Executor.execute: serialised, chunked, progress + cancel between chunks."""

    def __init__(self, chunks: int = 4, chunk_seconds: float = 0.0):
        self.chunks = chunks
        self.chunk_seconds = chunk_seconds
        self.lock = threading.Lock()
        self.calls: list = []
        self.chunks_done: list[int] = []
        self.uids: list[int | None] = []
        self.dry_run = False

    def execute(self, action, *, reason="schedule", uid=None, progress=None, cancelled=None):
        with self.lock:
            self.calls.append((action, reason))
            self.uids.append(uid)
            res = MigrationResult(pid=action.pid, target=frozenset(action.target_nodes))
            done = 0
            for _ in range(self.chunks):
                if cancelled is not None and cancelled():
                    res.cancelled = True
                    break
                time.sleep(self.chunk_seconds)
                done += 1
                res.moved += MiB // res.page_size
                if progress is not None:
                    progress(done * MiB, self.chunks * MiB)
            res.failed = Counter({"shared": 3})
            self.chunks_done.append(done)
            return Outcome(kind="migrate", pid=action.pid, comm=action.comm, rule=action.rule,
                           target=frozenset(action.target_nodes),
                           status="cancelled" if res.cancelled else "done", result=res)


class FakeHost:
    """Processes by pid: (real, effective, saved) uids, start time, dumpable."""

    def __init__(self):
        self.owners: dict[int, tuple[int, int, int]] = {100: (0, 0, 0), 200: (1000, 1000, 1000),
                                                        300: (1000, 0, 0)}
        self.start_times: dict[int, float] = {}
        self.undumpable: set[int] = set()
        self.credential_reads = 0
        self.drained: list[int] = []
        self.query_chunks = 0
        self.snapshots = 0

    def credentials(self, pid):
        self.credential_reads += 1
        if pid not in self.owners:
            raise ProcessGone(f"process {pid} is gone")
        uids = self.owners[pid]
        return Credentials(pid=pid, start_time=self.start_times.get(pid, 1.0), comm=f"proc{pid}",
                                  uids=tuple(uids) if len(uids) == 3 else (*uids, uids[1]),
                                  dumpable=pid not in self.undumpable)

    def node_snapshot(self):
        """Two nodes of 2 CPUs and 8 GiB; node 0 has 4 GiB free, node 1 6 GiB."""
        self.snapshots += 1
        return Snapshot(time=0.0, nodes=(NodeInfo(0, frozenset({0, 1}), 8 << 30, 4 << 30, True),
                                         NodeInfo(1, frozenset({2, 3}), 8 << 30, 6 << 30, True)),
                        distances={(0, 0): 10, (0, 1): 20, (1, 0): 20, (1, 1): 10})

    def target_nodes(self, spec):
        nodes = parse_nodes(spec, all_nodes={0, 1})
        if nodes - {0, 1}:
            raise InvalidNode(f"node {sorted(nodes - {0, 1})} does not exist")
        return nodes

    def missing_mappings(self, pid, names):
        return [n for n in names if n not in ("[heap]", "anon")]

    def query(self, pid, range_text, cancelled=lambda: False):
        self.credentials(pid)
        if range_text == "0-ffffffffffff":     # the huge range: chunked until the client goes
            while not cancelled():
                self.query_chunks += 1
                time.sleep(0.01)
            raise InterruptedError("the client went away")
        return {"pid": pid, "nodes": {"0": 4096}}

    def drain_targets(self, node, to):
        if node not in (0, 1):
            raise InvalidNode(f"node {node} does not exist")
        return [1 - node]

    def drain(self, node, targets, *, move_all, executor, progress, cancelled):
        from numad_py.control.drain import make_action
        moved = 0
        for pid in (100, 200):
            a = make_action(pid=pid, start_time=1.0, comm="x", rule="drain", target=targets)
            out = executor.execute(a, reason="drain", progress=progress, cancelled=cancelled)
            moved += out.result.bytes_moved
            if out.status == "cancelled":
                return {"node": node, "bytes_moved": moved, "cancelled": True}
        self.drained.append(node)
        return {"node": node, "bytes_moved": moved, "cancelled": False}


@pytest.fixture
def sockdir():
    # Short path: sun_path is 108 bytes and pytest's tmp_path can be longer.
    d = tempfile.mkdtemp(prefix="ctl", dir="/tmp")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_server(sockdir):
    servers = []

    def make(**options):
        options.setdefault("executor", FakeExecutor())
        options.setdefault("host", FakeHost())
        options.setdefault("status", lambda: {"pid": os.getpid(), "ticks": 3})
        options.setdefault("plan", lambda: [{"kind": "migrate", "pid": 1}])
        options.setdefault("reload", lambda: None)
        options.setdefault("read_timeout", 2.0)
        options.setdefault("progress_interval", 0.0)
        srv = ControlServer(str(sockdir / "c.sock"), **options).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


def connect(srv) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(srv.socket_path)
    return s


def read_messages(s: socket.socket, until_final: int = 1) -> list[dict]:
    """Read messages until ``until_final`` non-event replies arrived (or EOF)."""
    out, finals, buf = [], 0, b""
    while finals < until_final:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            msg = json.loads(line)
            out.append(msg)
            if "event" not in msg:
                finals += 1
    return out


def ask(srv, obj_or_line) -> dict:
    with connect(srv) as s:
        line = obj_or_line if isinstance(obj_or_line, bytes) else P.encode(obj_or_line)
        s.sendall(line if line.endswith(b"\n") else line + b"\n")
        return read_messages(s)[-1]


def req(op, rid="r1", **args):
    return {"v": 1, "id": rid, "op": op, **args}


@pytest.fixture
def as_peer(monkeypatch):
    def use(peer: Peer):
        monkeypatch.setattr(transport_mod, "peer_credentials", lambda sock: peer)
    return use


def audit_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "numad_py.audit"]
