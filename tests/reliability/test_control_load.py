"""Load on the control plane (host, fake executor): 1,000 idle connections and 200 concurrent
clients while ``status`` answers within 1 s; then stop() leaves no thread, fd or socket behind.
Prints its figures (attempts, failures, slowest status)."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "control"))

from ctlkit import FakeExecutor, FakeHost, read_messages, req, sockdir  # noqa: F401
from numad_py.control import protocol as P
from numad_py.control.server import ControlServer

IDLE, ACTIVE, ROUNDS = 1000, 200, 3


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def dial(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)          # blocking: waits for room in the backlog (non-blocking says EAGAIN)
    s.settimeout(20)
    return s


def test_thousand_idle_and_two_hundred_concurrent(sockdir):  # noqa: F811
    threads_before, fds_before = threading.active_count(), open_fds()
    srv = ControlServer(str(sockdir / "c.sock"), executor=FakeExecutor(chunks=2), host=FakeHost(),
                        status=lambda: {"ok": 1}, plan=lambda: [], reload=lambda: None).start()
    path = srv.socket_path
    idle = [dial(path) for _ in range(IDLE)]
    failures: list[str] = []
    answered = [0]
    lock = threading.Lock()
    start = threading.Barrier(ACTIVE)

    def client(i: int) -> None:
        try:
            with dial(path) as s:
                start.wait()
                for r in range(ROUNDS):
                    op = req("status", f"s{i}.{r}") if (i + r) % 2 else req("query", f"q{i}.{r}", pid=200)
                    s.sendall(P.encode(op))
                    reply = read_messages(s)[-1]
                    if not reply.get("ok"):
                        failures.append(str(reply))
                    with lock:
                        answered[0] += 1
        except Exception as exc:   # recorded, the assertion below reports it
            failures.append(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=client, args=(i,)) for i in range(ACTIVE)]
    for t in workers:
        t.start()
    slowest = 0.0
    while any(t.is_alive() for t in workers):
        t0 = time.monotonic()
        with dial(path) as s:
            s.sendall(P.encode(req("status", "probe")))
            assert read_messages(s)[-1]["ok"]
        slowest = max(slowest, time.monotonic() - t0)
        time.sleep(0.05)
    for t in workers:
        t.join()
    # the idle ones are still served
    idle[0].sendall(P.encode(req("status", "idle")))
    assert read_messages(idle[0])[-1]["ok"]
    server_threads = threading.active_count() - threads_before
    print(f"\ncontrol load: {IDLE} idle + {ACTIVE} concurrent x {ROUNDS}: answered {answered[0]}, "
          f"failures {len(failures)}, slowest status {slowest * 1000:.0f} ms, "
          f"server threads {server_threads}, refused {srv.refused_connections}")
    assert not failures, failures[:5]
    assert answered[0] == ACTIVE * ROUNDS
    assert slowest < 1.0
    assert server_threads <= 1 + 4          # the loop and the worker pool, whatever the load
    srv.stop()
    for s in idle:
        s.close()
    assert threading.active_count() == threads_before
    assert open_fds() == fds_before
    assert not os.path.exists(path)
