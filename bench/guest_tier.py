"""Benchmark `tiering` (issue 14), run inside the 6.12 `tiered` guest by bench/run.py.

The daemon's CPU with DAMON on, per GiB DAMON monitors: one workload
(tests/numa/tier_workload.py: N MiB, a 16 MiB slice read continuously) under a
tier rule, the daemon at its default 10 s scan interval and DAMON at its
defaults (5 ms sampling, 100 ms aggregation).  After the first demotions have
settled (cold_after + a margin), a window measures the CPU time of the daemon
process and of the kdamond kernel thread (/proc/PID/stat utime+stime).
Writes OUT/guest.json like guest_bench.py: {"meta", "rows", "raw", "errors"}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NUMAD = str(Path(sys.executable).parent / "numad-py")
WORKLOAD = REPO / "tests" / "numa" / "tier_workload.py"
KDAMOND_PID = Path("/sys/kernel/mm/damon/admin/kdamonds/0/pid")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(args, out: Path) -> dict:
    work = subprocess.Popen([sys.executable, str(WORKLOAD), "--mib", str(args.mib), "--tag", "bench"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    tmp = out / "tier"
    (tmp / "rules.d").mkdir(parents=True, exist_ok=True)
    # The runtime dir (the control socket) off the 9p share: binding a socket there fails (ENXIO).
    run = Path(tempfile.mkdtemp(prefix="numad-bench-tier-"))
    conf = tmp / "numad-py.toml"
    conf.write_text(f'[daemon]\nruntime_dir = "{run}"\nstate_dir = "{run}/state"\n'
                    f'[metrics]\nlisten = ""\n[control]\nsocket = "{run}/control.sock"\n')
    (tmp / "rules.d" / "10-tier.toml").write_text(
        '[[rule]]\nname = "bench"\nmatch.cmdline = "tier_workload.py --mib"\n'
        f'tier = {{ fast = "0-1", slow = "2", cold_after = "{args.cold_after}s" }}\n')
    log = open(tmp / "daemon.log", "w")
    daemon = None
    try:
        ready, _, _ = select.select([work.stdout], [], [], 300)
        if not ready:
            raise RuntimeError("the workload did not start in 300 s")
        wpid = json.loads(work.stdout.readline())["pid"]
        daemon = subprocess.Popen([NUMAD, "run", "--config", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not KDAMOND_PID.exists() or int(KDAMOND_PID.read_text() or -1) <= 0:
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError(f"no kdamond: {(tmp / 'daemon.log').read_text()[-800:]}")
            time.sleep(1)
        kpid = int(KDAMOND_PID.read_text())
        time.sleep(args.cold_after + args.settle)          # first demotions done
        d0, k0, t0 = cpu_seconds(daemon.pid), cpu_seconds(kpid), time.monotonic()
        time.sleep(args.window)
        d1, k1, t1 = cpu_seconds(daemon.pid), cpu_seconds(kpid), time.monotonic()
        gib = rss_bytes(wpid) / (1 << 30)
        window = t1 - t0
        return {"window": window, "monitored_gib": gib, "daemon_cpu": d1 - d0, "kdamond_cpu": k1 - k0,
                "daemon_share_per_gib": (d1 - d0) / window / gib, "kdamond_share_per_gib": (k1 - k0) / window / gib,
                "log_tail": (tmp / "daemon.log").read_text()[-1500:]}
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
        work.kill()
        work.wait()
        log.close()
        shutil.rmtree(run, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--cold-after", type=int, default=20)
    ap.add_argument("--settle", type=int, default=40)
    ap.add_argument("--window", type=int, default=120)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"kernel": platform.release(), "cpus": os.cpu_count(), "args": vars(args) | {"out": str(args.out)}}
    rows, raw, errors = [], {}, {}
    try:
        r = raw["tiering"] = measure(args, args.out)
        note = (f"{r['monitored_gib']:.2f} GiB monitored, {r['window']:.0f} s window: daemon {r['daemon_cpu']:.2f} s, "
                f"kdamond {r['kdamond_cpu']:.2f} s CPU (TCG: tens of times real hardware)")
        rows.append({"bench": "tiering", "id": "t1", "figure": "daemon CPU share per monitored GiB, DAMON on "
                     "(tier rule, 10 s scans)", "value": f"{r['daemon_share_per_gib'] * 100:.2f}%", "goal": "report",
                     "met": None, "note": note})
        rows.append({"bench": "tiering", "id": "t1b", "figure": "kdamond CPU share per monitored GiB (5 ms / 100 ms)",
                     "value": f"{r['kdamond_share_per_gib'] * 100:.2f}%", "goal": "report", "met": None, "note": ""})
    except Exception:
        errors["tiering"] = traceback.format_exc()
        print(errors["tiering"], flush=True)
    raw["seconds"] = {"tiering": 0}
    (args.out / "guest.json").write_text(json.dumps({"meta": meta, "rows": rows, "raw": raw, "errors": errors},
                                                    indent=2, default=str) + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
