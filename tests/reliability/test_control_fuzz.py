"""Fuzz the live control socket with arbitrary bytes: every non-blank line gets exactly one
reply line, the connection keeps working, nothing is logged as a traceback.  Prints its
figures (attempts, lines, failures)."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "control"))

from ctlkit import FakeExecutor, FakeHost
from numad_py.control import protocol as P
from numad_py.control.server import ControlServer

FIGURES = {"attempts": 0, "lines": 0, "failures": 0}


class Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def server():
    d = tempfile.mkdtemp(prefix="ctlfz", dir="/tmp")
    errors = Errors()
    logging.getLogger("numad_py").addHandler(errors)
    srv = ControlServer(f"{d}/c.sock", executor=FakeExecutor(chunks=1), host=FakeHost(),
                        status=lambda: {"ok": 1}, plan=lambda: [], reload=lambda: None,
                        read_timeout=5.0, max_line=4096).start()
    yield srv, errors
    srv.stop()
    logging.getLogger("numad_py").removeHandler(errors)
    shutil.rmtree(d, ignore_errors=True)
    print(f"\ncontrol fuzz: attempts {FIGURES['attempts']}, lines {FIGURES['lines']}, "
          f"failures {FIGURES['failures']}, tracebacks {len(errors.records)}")


def exchange(path: str, data: bytes) -> list[dict]:
    lines = [line for line in data.split(b"\n") if line.strip()]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.settimeout(10)
        s.sendall(data + b"\n" + P.encode(P.request("status", "after")))
        replies, buf = [], b""
        while len(replies) < len(lines) + 1:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                msg = json.loads(raw)
                if "event" not in msg:
                    replies.append(msg)
    FIGURES["lines"] += len(lines)
    return replies


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_get_one_line_each(server, data):
    srv, errors = server
    FIGURES["attempts"] += 1
    replies = exchange(srv.socket_path, data)
    expected = len([line for line in data.split(b"\n") if line.strip()])
    try:
        assert len(replies) == expected + 1, (data, replies)
        for reply in replies[:-1]:
            assert reply["ok"] is False and reply["error"]["code"] in P.ERROR_CODES
            assert reply["error"]["message"] and "\n" not in reply["error"]["message"]
        assert replies[-1]["ok"] and replies[-1]["id"] == "after"   # the connection still works
        assert not errors.records, errors.records[0].getMessage()
    except AssertionError:
        FIGURES["failures"] += 1
        raise


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "id", "op", "pid", "to", "range", "mapping", "node",
                                        "request", "move_all", "progress"]),
                       st.one_of(st.integers(-3, 300), st.text(max_size=12), st.booleans(), st.none(),
                                 st.sampled_from(["migrate", "query", "drain", "reload", "cancel", 1])),
                       max_size=8))
def test_request_shaped_objects(server, obj):
    srv, errors = server
    FIGURES["attempts"] += 1
    replies = exchange(srv.socket_path, json.dumps(obj).encode())
    assert len(replies) == 2 and replies[-1]["id"] == "after"
    assert replies[0]["ok"] or replies[0]["error"]["code"] != "internal", replies[0]
    assert not errors.records, errors.records[0].getMessage()
