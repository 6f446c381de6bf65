"""Cost of the fork-time shim: fork+exit+wait and fork+exec+wait, with ÷ without.

Two copies of a small C worker run side by side, one plain and one with the shim
configured as ``numad-py exec --node N`` would (fixed node, preferred,
NUMAD_SHIM_ROOT = the worker's own pid, so its children are placed and what they
exec does not load the shim).  The coordinator hands a token to one worker, then
the other (the order reversed every other round); on a token a worker does ONE
fork (+exec of /bin/true) + wait, timed inside the worker, and writes the time
back.  So the two cases are interleaved fork by fork, as bench_system_shim.py
interleaves its execs: timing whole runs one after the other read 0.75-1.44 for
the same code (30 pairs on the host), far wider than anything the shim costs.
Each repetition is a fresh pair of workers; its figure per case is the median
fork, and the ratio is paired per repetition (median and spread reported).
Goals: fork ≤ 1.10, fork+exec ≤ 1.03.

  python bench/bench_fork.py [--forks 1000] [--execs 400] [--reps 11] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from numad_py.shim import build_env, shim_path
from numad_py.topology import read_topology
from spread import spread

# argv: fork|exec TARGET.  Per byte read on stdin: one fork (+exec TARGET) + wait, its
# seconds written to stdout as a native double.  20 forks first, untimed, to warm up.
WORKER_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static int one(int exec_, const char *target) {
    pid_t p = fork();
    if (p == 0) { if (exec_) execl(target, target, (char *)0); _exit(0); }
    if (p < 0) { perror("fork"); return -1; }
    int st;
    return waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}
int main(int argc, char **argv) {
    if (argc != 3) { fputs("usage: worker fork|exec TARGET\n", stderr); return 2; }
    int exec_ = argv[1][0] == 'e';
    char token;
    for (int i = 0; i < 20; i++)
        if (one(exec_, argv[2]) < 0) return 1;
    while (read(0, &token, 1) == 1) {
        double t0 = now();
        if (one(exec_, argv[2]) < 0) return 1;
        double dt = now() - t0;
        if (write(1, &dt, sizeof dt) != sizeof dt) return 1;
    }
    return 0;
}
"""

# Exec the worker with NUMAD_SHIM_ROOT set to its own (preserved) pid, like `numad-py exec`.
LAUNCH = "import os, sys; os.environ['NUMAD_SHIM_ROOT'] = str(os.getpid()); os.execv(sys.argv[1], sys.argv[1:])"
DOUBLE = struct.Struct("d")


def build_worker(tmp: Path) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        raise SystemExit("bench_fork: needs gcc")
    src, exe = tmp / "fork_worker.c", tmp / "fork_worker"
    src.write_text(WORKER_C)
    subprocess.run([gcc, "-O2", "-Wall", "-o", str(exe), str(src)], check=True)
    return exe


def run_pair(worker: Path, kind: str, rounds: int, target: str, envs: dict[str, dict]) -> dict[str, float]:
    """One repetition: a fresh worker per case, ``rounds`` forks each, interleaved fork by
    fork; each case's median fork in seconds."""
    procs = {label: subprocess.Popen([sys.executable, "-c", LAUNCH, str(worker), kind, target], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
             for label, env in envs.items()}
    times: dict[str, list[float]] = {label: [] for label in procs}
    labels = list(procs)
    try:
        for r in range(rounds):
            for label in (labels if r % 2 == 0 else labels[::-1]):
                p = procs[label]
                assert p.stdin is not None and p.stdout is not None
                p.stdin.write(b"x")
                p.stdin.flush()
                data = p.stdout.read(DOUBLE.size)
                if len(data) != DOUBLE.size:
                    raise RuntimeError(f"bench_fork: the {label} worker stopped (exit {p.wait()})")
                times[label].append(DOUBLE.unpack(data)[0])
    finally:
        for p in procs.values():
            if p.stdin is not None:
                p.stdin.close()
            p.wait()
    return {label: statistics.median(t) for label, t in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--forks", type=int, default=1000, help="fork+exit+wait per case and repetition")
    ap.add_argument("--execs", type=int, default=400, help="fork+exec+wait per case and repetition")
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--node", type=int, help="node to place children on (default: the last memory node)")
    ap.add_argument("--json", type=Path, help="write the result here")
    args = ap.parse_args()

    topo = read_topology()
    node = args.node if args.node is not None else max(topo.memory_nodes)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("NUMAD_SHIM_")}
    base_env.pop("LD_PRELOAD", None)
    envs = {"base": base_env, "shim": build_env(base_env, strategy="fixed", nodes={node})}
    target = shutil.which("true") or "/bin/true"

    samples: dict[str, list[float]] = {k: [] for k in ("fork_base", "fork_shim", "exec_base", "exec_shim")}
    with tempfile.TemporaryDirectory() as tmp:
        worker = build_worker(Path(tmp))
        for _ in range(args.reps):
            for kind, rounds in (("fork", args.forks), ("exec", args.execs)):
                for label, seconds in run_pair(worker, kind, rounds, target, envs).items():
                    samples[f"{kind}_{label}"].append(seconds)

    med = {k: statistics.median(v) for k, v in samples.items()}
    paired = {kind: [s / b for s, b in zip(samples[f"{kind}_shim"], samples[f"{kind}_base"])]
              for kind in ("fork", "exec")}
    result = {
        "fork_exit_wait_ratio": round(statistics.median(paired["fork"]), 4),
        "fork_exec_wait_ratio": round(statistics.median(paired["exec"]), 4),
        "spread": {"fork": spread(paired["fork"]), "exec": spread(paired["exec"])},
        "paired_ratios": paired,
        "goals": {"fork_exit_wait_ratio": 1.10, "fork_exec_wait_ratio": 1.03},
        "method": "interleaved fork by fork (two workers, one token)",
        "median_seconds": {k: round(v, 9) for k, v in med.items()},
        "samples_seconds": samples,
        "forks": args.forks, "execs": args.execs, "reps": args.reps, "node": node,
        "nodes_online": sorted(topo.node_ids), "shim": str(shim_path()),
        "machine": platform.machine(), "kernel": platform.release(),
        "vm_topology": os.environ.get("NUMAD_VM_TOPOLOGY", ""),
    }
    for kind, label, goal in (("fork", "fork+exit+wait", 1.10), ("exec", "fork+exec+wait", 1.03)):
        sp = result["spread"][kind]
        print(f"{label}  shim/base = {sp['median']:.3f} (min {sp['min']:.3f}, max {sp['max']:.3f}; goal <= "
              f"{goal}; {med[kind + '_base'] * 1e6:.1f} us -> {med[kind + '_shim'] * 1e6:.1f} us)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
