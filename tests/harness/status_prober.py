"""Probe a numad-py control socket with `status` from a process of its own, so the probe does not
share an interpreter lock with whatever drives the load (a probe thread in the load's process
measures that process's contention as much as the daemon's).  Stdlib only; bench/control_load.py
runs it too.

    python status_prober.py SOCKET [--every 0.1]

Prints one line per probe: milliseconds, or ``error: ...``.  Stops when its stdin closes.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time


def probe(path: str, timeout: float) -> float:
    """Milliseconds for one status on a fresh connection, as `numad-py status` asks it."""
    t0 = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(b'{"v": 1, "id": "probe", "op": "status"}\n')
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("the daemon closed the connection")
            data += chunk
    if not json.loads(data).get("ok"):
        raise RuntimeError(data[:200].decode(errors="replace"))
    return (time.perf_counter() - t0) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("socket")
    ap.add_argument("--every", type=float, default=0.1)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print("ready", flush=True)
    while not done.is_set():
        try:
            print(f"{probe(args.socket, args.timeout):.1f}", flush=True)
        except Exception as exc:  # reported to the caller, which counts it as a failure
            print(f"error: {type(exc).__name__}: {exc}", flush=True)
        done.wait(args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
