"""The metrics endpoint: listen-address parsing and a real scrape over loopback (host tests)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest

from numad_py.metrics import DEFAULT_LISTEN, DEFAULT_PORT, Metrics, parse_listen, start_http_server
from numad_py.metrics import http
from numad_py.metrics.http import MAX_SCRAPES, STOP_WAIT


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9816", ("127.0.0.1", 9816)),
    ("  127.0.0.1:9816\n", ("127.0.0.1", 9816)),
    ("[::1]:9816", ("::1", 9816)),
    ("[::]:80", ("::", 80)),
    ("0.0.0.0:9816", ("0.0.0.0", 9816)),
    ("localhost:1", ("localhost", 1)),
    (":9816", ("127.0.0.1", 9816)),
    ("9816", ("127.0.0.1", 9816)),
    ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("", None),
    ("   ", None),
])
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text, fragment", [
    ("127.0.0.1", "not a number"),
    ("127.0.0.1:", "not a number"),
    ("127.0.0.1:http", "not a number"),
    ("127.0.0.1:-1", "not a number"),
    ("127.0.0.1:65536", "out of range"),
    ("::1:9816", "brackets"),
    ("[::1]", "[ADDR]:PORT"),
    ("[::1:9816", "[ADDR]:PORT"),
    ("[127.0.0.1]:9816", "only IPv6"),
    ("[nonsense]:9816", "not an IPv6 address"),
    ("a b:9816", "bad host"),
    ("http://127.0.0.1:9816", "brackets"),
])
def test_parse_listen_rejects_with_a_clear_message(text, fragment):
    with pytest.raises(ValueError) as info:
        parse_listen(text)
    message = str(info.value)
    assert repr(text) in message and fragment in message, message


def test_defaults():
    assert DEFAULT_PORT == 9816
    assert DEFAULT_LISTEN == "127.0.0.1:9816"


def test_empty_listen_disables():
    assert start_http_server("", Metrics(sys_root=None)) is None


def test_bad_listen_raises_before_binding():
    with pytest.raises(ValueError):
        start_http_server("nowhere", Metrics(sys_root=None))


def _scrape(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return resp.headers.get("Content-Type", ""), resp.read().decode()


def test_scrape_over_loopback():
    m = Metrics(sys_root=None, state_provider=lambda: {"rules": {"db": {"processes": 2, "resident_bytes": {1: 4096}}}})
    m.record_scan(0.25)
    m.record_request("migrate", "ok")
    server = start_http_server("127.0.0.1:0", m)
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        ctype, body = _scrape(server.url)
        assert ctype.startswith("text/plain")
        assert "numad_scans_total 1.0" in body
        assert 'numad_control_requests_total{op="migrate",result="ok"} 1.0' in body
        assert 'numad_rule_resident_bytes{node="1",rule="db"} 4096.0' in body
        m.record_scan(0.25)   # values are live
        assert "numad_scans_total 2.0" in _scrape(server.url)[1]
    finally:
        server.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_scrape_over_ipv6_loopback():
    m = Metrics(sys_root=None)
    server = start_http_server("[::1]:0", m)
    try:
        assert server.url.startswith("http://[::1]:")
        assert "numad_build_info" in _scrape(server.url)[1]
    finally:
        server.close()


def test_port_in_use_is_an_oserror():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OSError):
            start_http_server(f"127.0.0.1:{port}", Metrics(sys_root=None))


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "0.0.0.0:0"])
def test_close_wakes_the_idle_serve_loop(listen):
    """The serve loop sleeps until a scrape (IDLE_POLL is a minute): close() must wake it,
    on a wildcard address too, and leave nothing listening."""
    server = start_http_server(listen, Metrics(sys_root=None))
    assert "numad_build_info" in _scrape(f"http://127.0.0.1:{server.port}/metrics")[1]
    t0 = time.monotonic()
    server.close()
    assert time.monotonic() - t0 < STOP_WAIT
    assert not server._thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def _switches(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))


def test_an_idle_endpoint_does_not_wake():
    """Between scrapes the serving thread sleeps: prometheus_client's default loop woke
    twice a second (each wake is a voluntary context switch of that thread)."""
    server = start_http_server("127.0.0.1:0", Metrics(sys_root=None))
    try:
        tid = server._thread.native_id
        time.sleep(0.2)
        before = _switches(tid)
        time.sleep(1.5)
        assert _switches(tid) == before
    finally:
        server.close()


def test_idle_connections_past_the_limit_are_closed_and_scrapes_go_on():
    """A thread per connection, at most MAX_SCRAPES: more idle connections than that are
    closed at once instead of each holding a thread (the unit's TasksMax is 64), and once
    the idle ones time out or close, scrapes are served again."""
    server = start_http_server("127.0.0.1:0", Metrics(sys_root=None))
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(MAX_SCRAPES)]
    try:
        time.sleep(0.5)     # the serve loop has accepted them all, each in its thread
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        extra.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        assert extra.recv(100) == b""          # closed without an answer
        extra.close()
        serving = [t for t in threading.enumerate() if "process_request_thread" in t.name]
        assert len(serving) == MAX_SCRAPES
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            assert "numad_build_info" in _scrape(server.url)[1]
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    server.close()


def test_a_client_that_sends_nothing_times_out_quietly(monkeypatch, capfd):
    """A silent client frees its slot after the handler's timeout, with a debug line, not
    socketserver's traceback on stderr (the daemon's stderr is the journal)."""
    monkeypatch.setattr(http._QuietHandler, "timeout", 0.2)
    server = start_http_server("127.0.0.1:0", Metrics(sys_root=None))
    try:
        silent = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        assert silent.recv(100) == b""      # the server gave up on it
        silent.close()
        assert "numad_build_info" in _scrape(server.url)[1]
    finally:
        server.close()
    assert "Traceback" not in capfd.readouterr().err
