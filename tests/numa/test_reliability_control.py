"""The real daemon under the shipped unit's limits (TasksMax=64, LimitNOFILE=4096) in the VM:
1,000 idle and 200 concurrent clients, every ``status`` answered, a fixed thread count, a clean
stop.

Tasks are capped by ``systemd-run -p TasksMax=64`` when the guest runs systemd, else by a
cgroup v2 ``pids.max = 64`` (root is exempt from RLIMIT_NPROC, so that limit would prove
nothing).  Prints its figures.
"""

from __future__ import annotations

import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from numad_py.client import Client
from numad_py.control import protocol as P

pytestmark = [pytest.mark.topology("two"), pytest.mark.kernel_independent]

NUMAD = str(Path(sys.executable).with_name("numad-py"))
PROBER = Path(__file__).resolve().parents[1] / "harness" / "status_prober.py"
TASKS_MAX, NOFILE = 64, 4096          # systemd/numad-py.service
IDLE, ACTIVE, ROUNDS = 1000, 200, 3
ACTIVE_LIMIT = 100.0                   # seconds for the active phase (the harness allows 4 min a test)
CGROUP = Path("/sys/fs/cgroup")


def pids_cgroup() -> Path | None:
    """A cgroup v2 child with pids.max = TASKS_MAX, or None when the guest has no pids controller."""
    controllers = CGROUP / "cgroup.controllers"
    if not controllers.exists() or "pids" not in controllers.read_text().split():
        return None
    (CGROUP / "cgroup.subtree_control").write_text("+pids")
    cg = CGROUP / f"numad-load-{os.getpid()}"
    cg.mkdir(exist_ok=True)
    (cg / "pids.max").write_text(str(TASKS_MAX))
    return cg


def limits_in_child(cg: Path | None):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
        if cg is not None:
            (cg / "cgroup.procs").write_text("0")
    return apply


def dial(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)           # blocking: waits for room in the listen backlog
    s.settimeout(60)
    return s


def one_reply(s: socket.socket) -> dict:
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a reply")
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            msg = P.parse_reply(line)
            if "event" not in msg:
                return msg


def request_for(i: int, r: int, pid: int) -> bytes:
    """Round r of client i: status and query alternate."""
    return P.encode(P.request("status", f"s{i}.{r}") if (i + r) % 2
                    else P.request("query", f"q{i}.{r}", pid=pid))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


def test_thousand_idle_two_hundred_active_under_tasksmax(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    systemd = shutil.which("systemd-run") and Path("/run/systemd/system").is_dir()
    cg = None if systemd else pids_cgroup()
    if not systemd and cg is None:
        pytest.skip("neither systemd nor a cgroup v2 pids controller in this guest")
    run = tmp_path / "run"
    run.mkdir()
    config = tmp_path / "numad-py.toml"
    config.write_text(f'[daemon]\nscan_interval = "2s"\nruntime_dir = "{run}"\n[metrics]\nlisten = ""\n'
                      f'[control]\nsocket = "{run}/control.sock"\n')
    (tmp_path / "rules.d").mkdir()
    log = open(tmp_path / "daemon.log", "w")
    argv = [NUMAD, "run", "--config", str(config)]
    if systemd:
        argv = ["systemd-run", "--scope", "-p", f"TasksMax={TASKS_MAX}", "-p", f"LimitNOFILE={NOFILE}", *argv]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=None if systemd else limits_in_child(cg))
    sock = str(run / "control.sock")
    idle: list[socket.socket] = []
    target: subprocess.Popen | None = None
    try:
        deadline = time.monotonic() + 300    # interpreter start-up under TCG on a loaded host
        while not os.path.exists(sock) and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
            time.sleep(0.2)
        client = Client(sock, timeout=10)
        assert client.status()["pid"] == proc.pid or systemd
        t0 = time.monotonic()
        target = subprocess.Popen(["sleep", "1000"])       # what the clients query: a small process
        idle = [dial(sock) for _ in range(IDLE)]
        idle_seconds = time.monotonic() - t0
        failures: list[str] = []
        answered = [0]
        # One thread drives the 200 clients (non-blocking sockets, one selector): 200 Python
        # threads in this process would compete with the daemon for the guest's CPUs.
        clients = [dial(sock) for _ in range(ACTIVE)]

        def drive() -> None:
            sel = selectors.DefaultSelector()
            state = {}
            for i, c in enumerate(clients):
                c.setblocking(False)
                state[c] = [i, 0, b""]
                sel.register(c, selectors.EVENT_READ)
                c.send(request_for(i, 0, target.pid))
            deadline = time.monotonic() + ACTIVE_LIMIT
            while state and time.monotonic() < deadline:
                for key, _ in sel.select(1.0):
                    c = key.fileobj
                    st = state[c]
                    data = c.recv(65536)
                    if not data:
                        failures.append(f"client {st[0]}: closed")
                        sel.unregister(c)
                        del state[c]
                        continue
                    st[2] += data
                    while b"\n" in st[2]:
                        line, st[2] = st[2].split(b"\n", 1)
                        reply = P.parse_reply(line)
                        if "event" in reply:
                            continue
                        answered[0] += 1
                        if not reply["ok"]:
                            failures.append(str(reply["error"]))
                        st[1] += 1
                        if st[1] < ROUNDS:
                            c.send(request_for(st[0], st[1], target.pid))
                        else:
                            sel.unregister(c)
                            del state[c]
            failures.extend(f"client {st[0]}: no reply" for st in state.values())

        # The status probes come from a process of their own: a probe thread here would wait for
        # this process's interpreter lock behind the 200-client driver, and measure that.
        prober = subprocess.Popen([sys.executable, str(PROBER), sock], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert prober.stdout is not None and prober.stdout.readline().strip() == "ready"
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        workers = [threading.Thread(target=drive)]
        for t in workers:
            t.start()
        peak_threads = 0
        while any(t.is_alive() for t in workers):
            peak_threads = max(peak_threads, threads_of(proc.pid))
            time.sleep(0.1)
        for t in workers:
            t.join()
        probes, _ = prober.communicate(timeout=120)
        latencies = [float(x) / 1e3 for x in probes.splitlines() if x[:1].isdigit()]
        failures += [f"status probe: {x}" for x in probes.splitlines() if x.startswith("error")]
        for c in clients:
            c.close()
        active_seconds = time.monotonic() - t0
        daemon_cpu = cpu_seconds(proc.pid) - cpu0
        pids_current = (cg / "pids.current").read_text().strip() if cg is not None else "?"
        slowest = max(latencies, default=0.0)
        print(f"\ncontrol load in the VM ({'systemd-run' if systemd else 'pids cgroup'} "
              f"TasksMax={TASKS_MAX}, LimitNOFILE={NOFILE}): {IDLE} idle opened in {idle_seconds:.1f} s; "
              f"{ACTIVE} active x {ROUNDS} in {active_seconds:.1f} s (daemon CPU {daemon_cpu:.1f} s): "
              f"answered {answered[0]}, failures {len(failures)}; status probes {len(latencies)}, "
              f"median {sorted(latencies)[len(latencies) // 2] * 1000 if latencies else 0:.0f} ms, "
              f"slowest {slowest * 1000:.0f} ms; daemon threads peak {peak_threads}, pids.current "
              f"{pids_current}")
        t0 = time.monotonic()
        cli = subprocess.run([NUMAD, "status", "--socket", sock], capture_output=True, text=True,
                             timeout=240)
        cli_seconds = time.monotonic() - t0
        print(f"CLI numad-py status: exit {cli.returncode} in {cli_seconds:.1f} s (interpreter start-up included)")
        assert not failures, failures[:5]
        assert answered[0] == ACTIVE * ROUNDS
        # Every status probe was answered (a failure above otherwise).  How fast is printed, not
        # asserted: under TCG on a shared host it measures the host's load (the guideline: time
        # goals belong in benchmarks, compared side by side, never in a test).
        assert len(latencies) >= 1
        assert cli.returncode == 0, cli.stderr
        assert proc.poll() is None
        assert peak_threads <= 8          # main, control loop, <= 4 workers: fixed, whatever the load
    finally:
        if target is not None:
            target.kill()
            target.wait()
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        code = proc.wait(timeout=30)
        stop_seconds = time.monotonic() - t0
        print(f"daemon stopped in {stop_seconds:.1f} s with exit {code}")
        for s in idle:
            s.close()
        log.close()
        text = (tmp_path / "daemon.log").read_text()
        if cg is not None:
            cg.rmdir()
    assert code == 0, text
    assert "Traceback" not in text, text
    assert not os.path.exists(sock)
