"""Cost of the fork-time shim: fork+exit+wait and fork+exec+wait, with ÷ without.

A small C driver (compiled here with gcc) times N forks in a loop, so
Python's own overhead does not hide the shim's.  Each repetition runs the
four cases back to back (base/shim interleaved, same machine state); the
ratio is the median over repetitions of shim/base (each run's value is the
median per-fork latency, robust to preemption on a shared machine).  Goals: fork ≤ 1.10, fork+exec ≤ 1.03.

The shim run is configured as ``numad-py exec --node N`` would: fixed node,
preferred, NUMAD_SHIM_ROOT = the driver's pid (so the exec'd /bin/true loads
the shim but stays dormant).  The policy the driver sets for each child is a
real set_mempolicy/restore pair: the driver itself keeps the default policy.

  python bench/bench_fork.py [--forks 2000] [--execs 500] [--reps 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from numad_py.shim import build_env, shim_path
from numad_py.topology import read_topology

DRIVER_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
int main(int argc, char **argv) {
    int n = atoi(argv[2]); int exec_ = argv[1][0] == 'e';
    double *t = malloc(sizeof(double) * n);
    for (int i = 0; i < 20; i++) { pid_t p = fork(); if (p == 0) _exit(0); waitpid(p, NULL, 0); }  /* warm */
    for (int i = 0; i < n; i++) {
        double t0 = now();
        pid_t p = fork();
        if (p == 0) { if (exec_) execl(argv[3], argv[3], (char *)0); _exit(0); }
        if (p < 0) { perror("fork"); return 1; }
        waitpid(p, NULL, 0);
        t[i] = now() - t0;
    }
    qsort(t, n, sizeof(double), cmp);   /* median per run: robust to preemption on a busy host */
    printf("%.9f\n", t[n / 2]);
    return 0;
}
"""

# Exec the driver with NUMAD_SHIM_ROOT set to its own (preserved) pid, like `numad-py exec`.
LAUNCH = "import os, sys; os.environ['NUMAD_SHIM_ROOT'] = str(os.getpid()); os.execv(sys.argv[1], sys.argv[1:])"


def build_driver(tmp: Path) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        raise SystemExit("bench_fork: needs gcc")
    src, exe = tmp / "fork_driver.c", tmp / "fork_driver"
    src.write_text(DRIVER_C)
    subprocess.run([gcc, "-O2", "-o", str(exe), str(src)], check=True)
    return exe


def run_once(driver: Path, kind: str, n: int, target: str, env: dict) -> float:
    cmd = [sys.executable, "-c", LAUNCH, str(driver), kind, str(n), target]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--forks", type=int, default=500, help="fork+exit+wait per run")
    ap.add_argument("--execs", type=int, default=200, help="fork+exec+wait per run")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--node", type=int, help="node to place children on (default: the last memory node)")
    ap.add_argument("--json", type=Path, help="write the result here")
    args = ap.parse_args()

    topo = read_topology()
    node = args.node if args.node is not None else max(topo.memory_nodes)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("NUMAD_SHIM_")}
    base_env.pop("LD_PRELOAD", None)
    shim_env = build_env(base_env, strategy="fixed", nodes={node})
    target = shutil.which("true") or "/bin/true"

    samples: dict[str, list[float]] = {k: [] for k in ("fork_base", "fork_shim", "exec_base", "exec_shim")}
    with tempfile.TemporaryDirectory() as tmp:
        driver = build_driver(Path(tmp))
        for rep in range(args.reps):
            order = [("base", base_env), ("shim", shim_env)]
            if rep % 2:
                order.reverse()
            for label, env in order:
                samples[f"fork_{label}"].append(run_once(driver, "fork", args.forks, target, env))
            for label, env in order:
                samples[f"exec_{label}"].append(run_once(driver, "exec", args.execs, target, env))

    med = {k: statistics.median(v) for k, v in samples.items()}
    # Each repetition ran base and shim back to back: the ratio of each pair
    # cancels slow drifts of a shared machine; report the median pair ratio.
    paired = {kind: [s / b for s, b in zip(samples[f"{kind}_shim"], samples[f"{kind}_base"])]
              for kind in ("fork", "exec")}
    result = {
        "fork_exit_wait_ratio": round(statistics.median(paired["fork"]), 4),
        "fork_exec_wait_ratio": round(statistics.median(paired["exec"]), 4),
        "ratio_of_medians": {"fork": round(med["fork_shim"] / med["fork_base"], 4),
                             "exec": round(med["exec_shim"] / med["exec_base"], 4)},
        "goals": {"fork_exit_wait_ratio": 1.10, "fork_exec_wait_ratio": 1.03},
        "median_seconds": {k: round(v, 9) for k, v in med.items()},
        "samples_seconds": samples,
        "forks": args.forks, "execs": args.execs, "reps": args.reps, "node": node,
        "nodes_online": sorted(topo.node_ids), "shim": str(shim_path()),
        "machine": platform.machine(), "kernel": platform.release(),
        "vm_topology": os.environ.get("NUMAD_VM_TOPOLOGY", ""),
    }
    print(f"fork+exit+wait  shim/base = {result['fork_exit_wait_ratio']:.3f}  (goal <= 1.10; "
          f"{med['fork_base'] * 1e6:.1f} us -> {med['fork_shim'] * 1e6:.1f} us)")
    print(f"fork+exec+wait  shim/base = {result['fork_exec_wait_ratio']:.3f}  (goal <= 1.03; "
          f"{med['exec_base'] * 1e6:.1f} us -> {med['exec_shim'] * 1e6:.1f} us)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
