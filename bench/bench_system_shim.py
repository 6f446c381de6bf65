"""Cost of the system-wide shim for the unmatched majority: exec of /bin/true, with ÷ without.

System-wide the shim is loaded from /etc/ld.so.preload; editing the host's
file is not allowed here, so this loads it with ``LD_PRELOAD`` instead (same
constructor, same gate).  What that leaves out: ld.so's own ``access`` + read
of a one-line /etc/ld.so.preload, which every process pays once the file
exists, whatever it names.  The rules file is published by the daemon's code
(``publish_shim_rules``, which writes the gate) and names another program, so
the driver and every /bin/true it execs are unmatched.

Cases, interleaved exec by exec: each repetition is one run of a small C
driver that, ``--execs`` times, vforks and execs /bin/true once per case
(the order reversed every other round) and times each fork+exec+wait.  A
repetition's figure per case is its median exec; interleaving single execs
keeps the host's load changes out of the ratios far better than timing
whole runs one after another did (spreads of 0.78-1.36 for the empty
library, in one run):
  base        no shim
  bare        a library with nothing in it: no code, no C start files (so nothing
              to run or relocate), no RELRO: the least ld.so charges for any one
              more library, whatever it holds (the floor for any preload)
  empty       an empty shared library, linked as the shim is (two load segments,
              the C start files' constructors and relocations, RELRO): the floor
              for a library built like the shim
  gate        shim preloaded, rules + gate: the constructor reads the gate only
  text        the same without the gate file: the constructor reads the rules text
              (the behaviour before the gate, for comparison)

Reported: the median and the spread (min/median/max) of the per-repetition
ratios bare/base, empty/base, gate/base and text/base.  Goal (issue 17):
gate/base <= 1.02.

  python bench/bench_system_shim.py [--execs 1000] [--reps 11] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from numad_py.shim import publish_shim_rules, shim_path
from spread import spread, verdict
from numad_py.shim.gate import gate_path


def rules_for_another_program(directory: Path) -> Path:
    from numad_py.config.models import Rule
    rules = directory / "shim-rules"
    publish_shim_rules(rules, [Rule.model_validate({"name": "builds", "match": {"comm": "make|ninja"},
                                                    "spread_children": "0"})])
    return rules


# argv: ROUNDS CASE...; a CASE is "-" (the driver's own environment) or
# NAME=VALUE pairs separated by newlines, added to it.  Prints one median
# (seconds per fork+exec+wait) per case, in argument order.
DRIVER_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
extern char **environ;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static char **case_env(char *spec) {
    size_t n = 0, extra = 1;
    while (environ[n]) n++;
    for (char *c = spec; *c; c++) extra += *c == '\n';
    char **env = calloc(n + extra + 1, sizeof(char *));
    memcpy(env, environ, n * sizeof(char *));
    if (strcmp(spec, "-"))
        for (char *tok = strtok(spec, "\n"); tok; tok = strtok(NULL, "\n")) env[n++] = tok;
    return env;
}
int main(int argc, char **argv) {
    int rounds = atoi(argv[1]), cases = argc - 2;
    char **envs[16];
    if (cases < 1 || cases > 16 || rounds < 1) { fputs("usage: driver ROUNDS CASE...\n", stderr); return 2; }
    for (int c = 0; c < cases; c++) envs[c] = case_env(argv[2 + c]);
    double *t = malloc(sizeof(double) * rounds * cases);
    char *child[] = {"/bin/true", NULL};
    for (int r = -20; r < rounds; r++)          /* 20 rounds to warm up, not timed */
        for (int k = 0; k < cases; k++) {
            int c = (r & 1) ? cases - 1 - k : k;
            double t0 = now();
            pid_t p = vfork();
            if (p == 0) { execve(child[0], child, envs[c]); _exit(127); }
            int st;
            if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st)) { fputs("exec failed\n", stderr); return 1; }
            if (r >= 0) t[c * rounds + r] = now() - t0;
        }
    for (int c = 0; c < cases; c++) {
        qsort(t + c * rounds, rounds, sizeof(double), cmp);
        printf("%.9f\n", t[c * rounds + rounds / 2]);
    }
    return 0;
}
"""


def build_driver(directory: Path) -> Path:
    src, exe = directory / "exec_driver.c", directory / "exec_driver"
    src.write_text(DRIVER_C)
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(src)], check=True)
    return exe


def build_empty_library(directory: Path) -> Path:
    src, lib = directory / "empty.c", directory / "libempty.so"
    src.write_text("int numad_bench_empty;\n")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-Wl,-z,noseparate-code", "-o", str(lib), str(src)],
                   check=True)   # setup.py SHIM_CFLAGS: the same layout as the shim
    return lib


def build_bare_library(directory: Path) -> Path:
    src, lib = directory / "bare.c", directory / "libbare.so"
    src.write_text("int numad_bench_bare;\n")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-nostdlib", "-Wl,-z,noseparate-code", "-Wl,-z,norelro",
                    "-Wl,--build-id=none", "-o", str(lib), str(src)], check=True)
    return lib


def run_block(driver: Path, rounds: int, cases: dict[str, dict[str, str]], env: dict) -> dict[str, float]:
    """One repetition: every case's median exec, the cases interleaved exec by exec."""
    specs = ["\n".join(f"{k}={v}" for k, v in extra.items()) or "-" for extra in cases.values()]
    out = subprocess.run([str(driver), str(rounds), *specs], env=env, capture_output=True, text=True, check=True)
    return dict(zip(cases, map(float, out.stdout.split())))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--execs", type=int, default=1000, help="rounds per repetition (one exec per case each)")
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--json", type=Path, help="write the result here")
    args = ap.parse_args()

    base = {k: v for k, v in os.environ.items() if not k.startswith(("NUMAD_SHIM_", "LD_PRELOAD"))}
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        driver = build_driver(tmpdir)
        with_gate = tmpdir / "gate"
        without_gate = tmpdir / "text"
        with_gate.mkdir()
        without_gate.mkdir()
        gated_rules = rules_for_another_program(with_gate)
        text_rules = rules_for_another_program(without_gate)
        gate_path(text_rules).unlink()
        cases = {"base": {},
                 "bare": {"LD_PRELOAD": str(build_bare_library(tmpdir))},
                 "empty": {"LD_PRELOAD": str(build_empty_library(tmpdir))},
                 "gate": {"LD_PRELOAD": str(shim_path()), "NUMAD_SHIM_RULES": str(gated_rules)},
                 "text": {"LD_PRELOAD": str(shim_path()), "NUMAD_SHIM_RULES": str(text_rules)}}
        samples: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.reps):
            for label, seconds in run_block(driver, args.execs, cases, base).items():
                samples[label].append(seconds)

    paired = {k: [s / b for s, b in zip(samples[k], samples["base"])] for k in ("bare", "empty", "gate", "text")}
    result = {
        "exec_bare_library_ratio": spread(paired["bare"]),
        "exec_empty_library_ratio": spread(paired["empty"]),
        "exec_unmatched_ratio": spread(paired["gate"]),
        "exec_unmatched_text_ratio": spread(paired["text"]),
        "goal": {"exec_unmatched_ratio": 1.02},
        "loaded_with": "LD_PRELOAD (not /etc/ld.so.preload: the host's file is not edited)",
        "median_seconds": {k: round(statistics.median(v), 9) for k, v in samples.items()},
        "samples_seconds": samples, "execs": args.execs, "reps": args.reps,
        "machine": platform.machine(), "kernel": platform.release(),
    }
    g, t, e = result["exec_unmatched_ratio"], result["exec_unmatched_text_ratio"], result["exec_empty_library_ratio"]
    bare = result["exec_bare_library_ratio"]
    met = verdict("<= 1.02", g) == "yes"
    print(f"exec /bin/true unmatched, shim via LD_PRELOAD: gate/base median {g['median']:.3f} "
          f"(min {g['min']:.3f}, max {g['max']:.3f}; goal <= 1.02: {'met' if met else 'not met'}); "
          f"rules text without a gate: median {t['median']:.3f} (min {t['min']:.3f}, max {t['max']:.3f}); "
          f"an empty library: median {e['median']:.3f} (min {e['min']:.3f}, max {e['max']:.3f}); "
          f"a bare library: median {bare['median']:.3f} (min {bare['min']:.3f}, max {bare['max']:.3f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
