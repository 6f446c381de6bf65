"""CLI start-up on the host: `numad-py status`, `show`, `--help` wall time / `python -c pass`.

    python bench/cli_startup.py [--reps 11] [--rounds 15] [--json OUT]

Each round runs the bare interpreter and every command once, in an order
that alternates forwards and backwards (A B C D, D C B A, ...).  A
repetition is ``--rounds`` rounds; its figure per command is the median
start-up, and each command's ratio is paired with the interpreter's median
of the same repetition.  (Pairing single rounds, the spread's far end was
one start that the shared host delayed: 2.0-2.1 with medians of 1.3.)  The
interpreter is the one numad-py runs under (its script's ``#!`` line), with
the same site setup, so the ratio is what numad-py adds to starting Python.
Issue 17's goal: <= 2 for status, show and --help.  The child's CPU time
(wait4) is reported beside the wall time: on a loaded host it is the
steadier of the two.  Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from spread import spread, verdict  # noqa: E402

GOAL = "<= 2.0"


def numad_script() -> Path:
    venv = Path(os.environ.get("NUMAD_VM_PYTHON") or REPO / ".venv" / "bin" / "python").parent
    return venv / "numad-py"


def interpreter_of(script: Path) -> str:
    first = script.read_text().splitlines()[0]
    return first[2:].strip() if first.startswith("#!") else sys.executable


def commands(script: Path, pid: int) -> dict[str, list[str]]:
    nowhere = "/nonexistent/numad-py-bench"
    return {
        "python -c pass": [interpreter_of(script), "-c", "pass"],
        "--help": [str(script), "--help"],
        "status": [str(script), "status", "--socket", f"{nowhere}/control.sock", "--runtime-dir", nowhere],
        "show": [str(script), "show", str(pid)],
        "migrate (nothing to move)": [str(script), "migrate", str(pid), "--to", "0"],
    }


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and the child's CPU seconds (user + system, from wait4)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime


def measure(reps: int, script: Path | None = None, rounds: int = 15) -> dict:
    script = script or numad_script()
    # Byte-code as `pip install .` leaves it (this environment may set PYTHONDONTWRITEBYTECODE,
    # and then every start would compile the sources again).
    subprocess.run([interpreter_of(script), "-m", "compileall", "-q", str(REPO / "numad_py")], check=True)
    # `show` and `migrate` need a live process; a sleeping child is one (node 0 exists everywhere).
    idle = subprocess.Popen(["sleep", "3600"])
    try:
        cmds = commands(script, idle.pid)
        names = list(cmds)
        for name in names:             # warm the page cache and the .pyc files
            run_once(cmds[name])
        seconds: dict[str, list[float]] = {n: [] for n in names}      # every start
        cpu: dict[str, list[float]] = {n: [] for n in names}
        rep_seconds: dict[str, list[float]] = {n: [] for n in names}  # one median per repetition
        rep_cpu: dict[str, list[float]] = {n: [] for n in names}
        load_before = os.getloadavg()
        for _rep in range(reps):
            block_wall: dict[str, list[float]] = {n: [] for n in names}
            block_cpu: dict[str, list[float]] = {n: [] for n in names}
            for rnd in range(rounds):
                for name in names if rnd % 2 == 0 else names[::-1]:
                    w, c = run_once(cmds[name])
                    block_wall[name].append(w)
                    block_cpu[name].append(c)
            for name in names:
                seconds[name] += block_wall[name]
                cpu[name] += block_cpu[name]
                rep_seconds[name].append(statistics.median(block_wall[name]))
                rep_cpu[name].append(statistics.median(block_cpu[name]))
    finally:
        idle.kill()
        idle.wait()

    def paired(samples: dict[str, list[float]]) -> dict[str, list[float]]:
        base = samples["python -c pass"]
        return {n: [a / b for a, b in zip(samples[n], base)] for n in names[1:]}

    ratios, cpu_ratios = paired(rep_seconds), paired(rep_cpu)
    out = {"argv": cmds, "rounds_per_rep": rounds, "seconds": seconds, "cpu_seconds": cpu,
           "rep_median_seconds": rep_seconds, "ratios": ratios, "cpu_ratios": cpu_ratios,
           "spread": {n: spread(r) for n, r in ratios.items()},
           "cpu_spread": {n: spread(r) for n, r in cpu_ratios.items()},
           "median_ms": {n: 1e3 * statistics.median(v) for n, v in seconds.items()},
           "cpu_median_ms": {n: 1e3 * statistics.median(v) for n, v in cpu.items()},
           "loadavg": [load_before, os.getloadavg()]}
    out["rows"] = rows(out)
    return out


def rows(res: dict) -> list[dict]:
    ms, cms = res["median_ms"], res["cpu_median_ms"]
    load = max(res["loadavg"][0][0], res["loadavg"][1][0])
    out = []
    for i, name in enumerate(("status", "show", "--help", "migrate (nothing to move)"), start=1):
        s, c = res["spread"][name], res["cpu_spread"][name]
        goal = GOAL if not name.startswith("migrate") else None
        v = verdict(goal, s)
        out.append({"bench": "cli", "id": f"c{i}", "figure": f"CLI start-up (host): numad-py {name} / python -c pass",
                    "value": round(s["median"], 3), "goal": goal or "-", "spread": s,
                    "met": None if v is None else v == "yes", "verdict": v,
                    "note": f"wall {ms[name]:.1f} vs {ms['python -c pass']:.1f} ms (medians); CPU time ratio "
                            f"{c['median']:.2f} [{c['min']:.2f}-{c['max']:.2f}] ({cms[name]:.1f} vs "
                            f"{cms['python -c pass']:.1f} ms); host load average up to {load:.1f}"})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=11, help="repetitions (one paired ratio each)")
    ap.add_argument("--rounds", type=int, default=15, help="rounds per repetition")
    ap.add_argument("--json", type=Path, help="write the raw samples and rows here")
    args = ap.parse_args(argv)
    res = measure(args.reps, rounds=args.rounds)
    for r in res["rows"]:
        s = r["spread"]
        print(f"{r['id']:<3} {r['figure']:<62} {r['value']:>6}  [{s['min']:.2f}-{s['max']:.2f}]  "
              f"goal {r['goal']:<7} {r['verdict'] or '-':<6} {r['note']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
