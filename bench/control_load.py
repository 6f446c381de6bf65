"""Control socket under load on the host: `status` round trips while 1,000 idle and 200 active
clients hold the real daemon (issue 11's goal: status answers within 1 s).

    python bench/control_load.py [--reps 3] [--json OUT]

Starts `numad-py run` with no rules, a private socket and the shipped unit's
LimitNOFILE (4096).  Each repetition has a quiet phase (status probes alone)
and a loaded phase (the same probes while 1,000 connections sit idle and 200
clients send 20 requests each, status and query of a sleeping process
alternating); phases alternate, and the loaded median is paired with the
quiet one of its repetition.  The probe is a fresh connection and one
request line, as `numad-py status` makes (without the interpreter start-up,
which bench/cli_startup.py measures), sent from a process of its own
(tests/harness/status_prober.py) during the load.  The same load runs in the 2-node
guest in tests/numa/test_reliability_control.py, which prints its figures.
Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cli_startup import numad_script  # noqa: E402
from spread import spread, verdict  # noqa: E402

PROBER = HERE.parent / "tests" / "harness" / "status_prober.py"
sys.path.insert(0, str(PROBER.parent))
from status_prober import probe  # noqa: E402  (the same probe, in this process for the quiet phase)

IDLE, ACTIVE, ROUNDS, NOFILE = 1000, 200, 20, 4096     # 20 rounds: a load window long enough for ~20 probes
GOAL = "<= 1000"                  # ms, the slowest probe under load


def line(op: str, rid: str, **fields) -> bytes:
    return (json.dumps({"v": 1, "id": rid, "op": op, **fields}) + "\n").encode()


def dial(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def drive(path: str, target: int) -> tuple[int, list[str]]:
    """200 clients x ROUNDS requests on one selector; (answered, what failed)."""
    sel = selectors.DefaultSelector()
    state: dict[socket.socket, list] = {}
    answered = 0
    failed: list[str] = []

    def send(c: socket.socket, i: int, r: int) -> None:
        c.sendall(line("status", f"s{i}.{r}") if (i + r) % 2 else line("query", f"q{i}.{r}", pid=target))

    for i in range(ACTIVE):
        c = dial(path)
        send(c, i, 0)
        c.setblocking(False)
        state[c] = [i, 0, b""]
        sel.register(c, selectors.EVENT_READ)
    while state:
        events = sel.select(60)
        if not events:
            failed += [f"client {st[0]}: no reply in 60 s" for st in state.values()]
            break
        for key, _ in events:
            c = key.fileobj
            st = state[c]
            data = c.recv(65536)
            if not data:
                failed.append(f"client {st[0]}: closed")
                sel.unregister(c)
                del state[c]
                continue
            st[2] += data
            while b"\n" in st[2] and c in state:
                raw, st[2] = st[2].split(b"\n", 1)
                reply = json.loads(raw)
                if "event" in reply:
                    continue
                answered += 1
                if not reply["ok"]:
                    failed.append(f"client {st[0]}: {reply.get('error')}")
                st[1] += 1
                if st[1] < ROUNDS:
                    c.setblocking(True)
                    send(c, st[0], st[1])
                    c.setblocking(False)
                else:
                    sel.unregister(c)
                    del state[c]
                    c.close()
    return answered, failed


def probes(path: str, count: int) -> list[float]:
    out: list[float] = []
    for _ in range(count):
        out.append(probe(path, 30.0) / 1e3)
        time.sleep(0.05)
    return out


def measure(reps: int) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, IDLE + ACTIVE + 256)), hard))
    tmp = Path(tempfile.mkdtemp(prefix="numad-bench-control-"))
    (tmp / "rules.d").mkdir()
    path = str(tmp / "control.sock")
    config = tmp / "numad-py.toml"
    config.write_text(f'[daemon]\nscan_interval = "2s"\nruntime_dir = "{tmp}"\nstate_dir = "{tmp}/state"\n'
                      f'[metrics]\nlisten = ""\n[control]\nsocket = "{path}"\n')
    log = open(tmp / "daemon.log", "w")
    daemon = subprocess.Popen([str(numad_script()), "run", "--config", str(config)], stdout=log,
                              stderr=subprocess.STDOUT,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE)))
    target = subprocess.Popen(["sleep", "3600"])
    quiet: list[list[float]] = []
    loaded: list[list[float]] = []
    totals: dict = {"answered": 0, "failed": 0, "failures": []}
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(path):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not start: {(tmp / 'daemon.log').read_text()[-2000:]}")
            time.sleep(0.1)
        probes(path, 5)                                # warm-up
        for _ in range(reps):
            quiet.append(probes(path, 20))
            idle = [dial(path) for _ in range(IDLE)]
            # Probes from a process of their own: a thread here would queue behind drive() for
            # this interpreter's lock and measure that.
            prober = subprocess.Popen([sys.executable, str(PROBER), path, "--every", "0.05"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert prober.stdout is not None and prober.stdout.readline().strip() == "ready"
            answered, failed = drive(path, target.pid)
            lines = prober.communicate(timeout=120)[0].splitlines()
            samples = [float(x) / 1e3 for x in lines if x[:1].isdigit()]
            failed += [f"status probe: {x}" for x in lines if x.startswith("error")]
            for s in idle:
                s.close()
            loaded.append(samples)
            totals["answered"] += answered
            totals["failed"] += len(failed)
            totals["failures"] += failed[:5]
    finally:
        target.kill()
        target.wait()
        daemon.terminate()
        code = daemon.wait(timeout=60)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    med = [sorted(x)[len(x) // 2] for x in quiet], [sorted(x)[len(x) // 2] for x in loaded]
    ratios = [b / a for a, b in zip(*med)]
    slowest = [1e3 * max(x) for x in loaded]
    out = {"quiet_s": quiet, "loaded_s": loaded, "ratios": ratios, "spread": spread(ratios),
           "slowest_ms": spread(slowest), "daemon_exit": code, **totals,
           "loadavg": os.getloadavg()}
    out["rows"] = rows(out)
    return out


def rows(res: dict) -> list[dict]:
    s, slow = res["spread"], res["slowest_ms"]
    v = verdict(GOAL, slow)
    quiet = sorted(x for rep in res["quiet_s"] for x in rep)
    loaded = sorted(x for rep in res["loaded_s"] for x in rep)
    return [
        {"bench": "control", "id": "k1", "figure": "control (host): slowest status under 1,000 idle + 200 active, ms",
         "value": round(slow["median"], 1), "goal": GOAL, "spread": slow, "met": v == "yes", "verdict": v,
         "note": f"{len(loaded)} probes, median {1e3 * loaded[len(loaded) // 2]:.1f} ms; {res['answered']} "
                 f"requests answered, {res['failed']} failed"
                 f"{' (' + '; '.join(res['failures'][:2]) + ')' if res['failures'] else ''}; "
                 f"daemon exit {res['daemon_exit']}"},
        {"bench": "control", "id": "k2", "figure": "control (host): status median loaded / quiet",
         "value": round(s["median"], 2), "goal": "-", "spread": s, "met": None, "verdict": None,
         "note": f"quiet median {1e3 * quiet[len(quiet) // 2]:.1f} ms; host load average {res['loadavg'][0]:.1f}"},
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write the raw samples and rows here")
    args = ap.parse_args(argv)
    res = measure(args.reps)
    for r in res["rows"]:
        print(f"{r['id']:<3} {r['figure']:<70} {r['value']:>7}  goal {r['goal']:<7} "
              f"{r['verdict'] or '-':<6} {r['note']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0 if res["failed"] == 0 and res["daemon_exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
