"""Cost of the system-wide shim for the unmatched majority: exec of /bin/true, with ÷ without.

System-wide the shim is loaded from /etc/ld.so.preload; editing the host's
file is not allowed here, so this loads it with ``LD_PRELOAD`` instead (same
constructor, same gate).  What that leaves out: ld.so's own ``access`` + read
of a one-line /etc/ld.so.preload, which every process pays once the file
exists, whatever it names.  The rules file is published by the daemon's code
(``publish_shim_rules``, which writes the gate) and names another program, so
the driver and every /bin/true it execs are unmatched.

Cases, interleaved per repetition (base first on even reps, last on odd):
  base        no shim
  empty       an empty shared library preloaded: what ld.so charges for any one more
              library (the floor for any preloaded shim)
  gate        shim preloaded, rules + gate: the constructor reads the gate only
  text        the same without the gate file: the constructor reads the rules text
              (the behaviour before the gate, for comparison)

Reported: the median and the spread (min/median/max) of the paired ratios
empty/base, gate/base and text/base.  Goal (issue 17): gate/base <= 1.02.

  python bench/bench_system_shim.py [--execs 300] [--reps 11] [--json out.json]
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

from bench_fork import build_driver

from numad_py.shim import publish_shim_rules, shim_path
from numad_py.shim.gate import gate_path


def rules_for_another_program(directory: Path) -> Path:
    from numad_py.config.models import Rule
    rules = directory / "shim-rules"
    publish_shim_rules(rules, [Rule.model_validate({"name": "builds", "match": {"comm": "make|ninja"},
                                                    "spread_children": "0"})])
    return rules


def build_empty_library(directory: Path) -> Path:
    src, lib = directory / "empty.c", directory / "libempty.so"
    src.write_text("int numad_bench_empty;\n")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def run_once(driver: Path, n: int, env: dict) -> float:
    out = subprocess.run([str(driver), "exec", str(n), "/bin/true"], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip())


def spread(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 4), "median": round(statistics.median(values), 4),
            "max": round(max(values), 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--execs", type=int, default=300, help="fork+exec+wait per run")
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
        envs = {"base": base,
                "empty": {**base, "LD_PRELOAD": str(build_empty_library(tmpdir))},
                "gate": {**base, "LD_PRELOAD": str(shim_path()), "NUMAD_SHIM_RULES": str(gated_rules)},
                "text": {**base, "LD_PRELOAD": str(shim_path()), "NUMAD_SHIM_RULES": str(text_rules)}}
        samples: dict[str, list[float]] = {k: [] for k in envs}
        for rep in range(args.reps):
            order = list(envs) if rep % 2 == 0 else list(reversed(envs))
            for label in order:
                samples[label].append(run_once(driver, args.execs, envs[label]))

    paired = {k: [s / b for s, b in zip(samples[k], samples["base"])] for k in ("empty", "gate", "text")}
    result = {
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
    met = g["median"] <= 1.02 and g["max"] <= 1.02
    print(f"exec /bin/true unmatched, shim via LD_PRELOAD: gate/base median {g['median']:.3f} "
          f"(min {g['min']:.3f}, max {g['max']:.3f}; goal <= 1.02: {'met' if met else 'not met'}); "
          f"rules text without a gate: median {t['median']:.3f} (min {t['min']:.3f}, max {t['max']:.3f}); "
          f"an empty library: median {e['median']:.3f} (min {e['min']:.3f}, max {e['max']:.3f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
