#!/usr/bin/env python3
"""Run tests/numa inside QEMU guests with real multi-node NUMA topologies.

Each topology boots ONE guest (virtme-ng, TCG: --disable-kvm) that runs the
whole tests/numa group with the project's venv; results come back through a
shared --rwdir: the pytest log (streamed here while it runs), a junit XML
and an rc file.  vng's own exit code is not trusted.

    python tests/vm/run.py                         # all topologies
    python tests/vm/run.py --topology two -k thp   # iterate on one test
    python tests/vm/run.py --topology four -- -x --tb=long

Fails (exit 1) if any topology failed, errored, timed out, did not boot, or
ran zero tests.  Under CI=true (or --strict) a skip for any reason other
than "this test needs another topology" fails too.  Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from guest_runner import Tail, last_lines, run_guest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = HERE / "out"
TOPOLOGY_SKIP_PREFIX = "needs VM topology"  # must match tests/numa/conftest.py

# Four nodes, one CPU each; distances are neither uniform nor symmetric
# (ACPI SLIT allows d(a,b) != d(b,a)): node 3 is far from everyone, and
# 0->1 is cheaper than 1->0.
FOUR_DISTANCES = [
    [10, 16, 24, 40],
    [18, 10, 20, 32],
    [24, 20, 10, 28],
    [40, 32, 28, 10],
]

TOPOLOGIES = {
    "two": {
        "memory": "2G",
        "nodes": [{"mem": "1G", "cpus": [0, 1]}, {"mem": "1G", "cpus": [2, 3]}],
    },
    "four": {
        "memory": "2G",
        "nodes": [{"mem": "512M", "cpus": [i]} for i in range(4)],
        "distances": FOUR_DISTANCES,
    },
    "memonly": {
        "memory": "3G",
        "nodes": [{"mem": "1G", "cpus": [0, 1]}, {"mem": "1G", "cpus": [2, 3]}, {"mem": "1G", "cpus": []}],
    },
}
CPUS = 4


def vng_args(spec: dict) -> list[str]:
    args = ["--cpus", str(CPUS), "-m", spec["memory"]]
    for node in spec["nodes"]:
        cpus = node["cpus"]
        text = node["mem"]
        if cpus:
            text += f",cpus={min(cpus)}-{max(cpus)}" if len(cpus) > 1 else f",cpus={cpus[0]}"
        args += ["--numa", text]
    dist = spec.get("distances")
    if dist:
        for a, row in enumerate(dist):
            for b, value in enumerate(row):
                if a != b:
                    args += ["--numa-distance", f"{a},{b}={value}"]
    return args


# --- setup -----------------------------------------------------------------

def setup_env(skip_setup: bool) -> dict[str, str]:
    """Kernel and vng paths: from the environment, or tests/vm/setup.sh --print-env."""
    if skip_setup and os.environ.get("NUMAD_VM_KERNEL") and os.environ.get("NUMAD_VM_VNG"):
        return {"NUMAD_VM_KERNEL": os.environ["NUMAD_VM_KERNEL"], "NUMAD_VM_VNG": os.environ["NUMAD_VM_VNG"]}
    proc = subprocess.run(["bash", str(HERE / "setup.sh"), "--print-env"], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"vm: tests/vm/setup.sh failed (exit {proc.returncode}): cannot boot the test VMs")
    env = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    for key in ("NUMAD_VM_KERNEL", "NUMAD_VM_VNG"):
        env[key] = os.environ.get(key) or env.get(key, "")
        if not env[key]:
            raise SystemExit(f"vm: setup.sh did not report {key}")
    return env


def venv_python() -> Path:
    for candidate in (os.environ.get("NUMAD_VM_PYTHON"), REPO / ".venv" / "bin" / "python"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise SystemExit(f"vm: no venv at {REPO / '.venv'}: run `make venv` first")


# --- one topology ----------------------------------------------------------

@dataclass
class Outcome:
    name: str
    seconds: float = 0.0
    rc: int | None = None
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped_topology: int = 0
    skipped_other: list[str] = field(default_factory=list)
    xfailed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ran(self) -> int:
        return self.passed + self.failed + self.errors

    def line(self) -> str:
        skipped = self.skipped_topology + len(self.skipped_other)
        text = (f"{self.name}: {self.passed} passed, {self.failed} failed, {self.errors} errors, "
                f"{skipped} skipped ({self.skipped_topology} for another topology)")
        if self.xfailed:
            text += f", {self.xfailed} xfailed"
        return text + f", pytest rc={self.rc}, {self.seconds:.0f}s"


def guest_script(name: str, spec: dict, rwdir: Path, python: Path, pytest_args: list[str]) -> str:
    q = shlex.quote
    env = {
        "NUMAD_VM_TOPOLOGY": name,
        "NUMAD_VM_SPEC": json.dumps(spec),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    exports = " ".join(f"{k}={q(v)}" for k, v in env.items())
    # Paths given after -- replace the default tests/numa; a hung test dumps
    # its stack after faulthandler_timeout instead of only timing out.
    paths = [] if any(a.startswith("tests/") for a in pytest_args) else ["tests/numa"]
    pytest = [str(python), "-m", "pytest", *paths, "-p", "no:cacheprovider", "-rfEx",
              "-o", "faulthandler_timeout=240", f"--junitxml={rwdir / (name + '.xml')}", *pytest_args]
    return "\n".join([
        "#!/bin/bash",
        f"rc={q(str(rwdir / (name + '.rc')))}",
        f"log={q(str(rwdir / (name + '.log')))}",
        f"cd {q(str(REPO))} || {{ echo 'guest: cannot cd to the repo' >\"$log\"; echo 96 >\"$rc\"; exit 0; }}",
        # Kernel NUMA balancing would move test pages on its own and make
        # placement assertions a race; the daemon's reporting of it is tested
        # on the host.  Off for the whole guest.
        "echo 0 >/proc/sys/kernel/numa_balancing 2>/dev/null",
        "echo \"guest: $(uname -r), nodes $(cat /sys/devices/system/node/online), $(nproc) cpus, "
        "numa_balancing $(cat /proc/sys/kernel/numa_balancing)\" >\"$log\"",
        f"export {exports}",
        f"{' '.join(q(a) for a in pytest)} >>\"$log\" 2>&1",
        "echo $? >\"$rc\"",
        "",
    ])


def run_topology(name: str, env: dict, python: Path, rundir: Path, pytest_args: list[str],
                 timeout: float, verbose: bool) -> Outcome:
    spec = TOPOLOGIES[name]
    rwdir = rundir / name
    rwdir.mkdir(parents=True)
    script = rwdir / "guest.sh"
    script.write_text(guest_script(name, spec, rwdir, python, pytest_args))
    console = rwdir / "console.log"
    cmd = [env["NUMAD_VM_VNG"], "-v", "-r", env["NUMAD_VM_KERNEL"], "--disable-kvm",
           *vng_args(spec), "--rwdir", str(rwdir), "--exec", f"bash {script}"]
    print(f"== {name}: booting {len(spec['nodes'])}-node guest "
          f"({' '.join(shlex.quote(a) for a in vng_args(spec))})", flush=True)
    if verbose:
        print("   " + " ".join(shlex.quote(c) for c in cmd), flush=True)

    outcome = Outcome(name)
    tail = Tail(rwdir / f"{name}.log", f"[{name}] ")
    tails = [tail, Tail(console, f"[{name} console] ")] if verbose else [tail]
    timed_out, outcome.seconds = run_guest(cmd, console, tails, timeout, REPO)

    if timed_out:
        outcome.problems.append(f"timed out after {timeout:.0f}s")
    if not tail.seen:
        outcome.problems.append("the guest never started the tests (boot failure?)")
        print(f"[{name}] --- last console lines ({console}) ---", flush=True)
        for line in last_lines(console, 40):
            print(f"[{name}]   {line}", flush=True)

    rc_file = rwdir / f"{name}.rc"
    if rc_file.exists() and rc_file.read_text().strip().lstrip("-").isdigit():
        outcome.rc = int(rc_file.read_text().strip())
    else:
        outcome.problems.append(f"no exit code from the guest ({rc_file.name} missing)")

    read_junit(rwdir / f"{name}.xml", outcome)
    if outcome.rc not in (None, 0) and not (outcome.failed or outcome.errors):
        outcome.problems.append(f"pytest exited {outcome.rc}"
                                + (" (no tests collected)" if outcome.rc == 5 else ""))
    return outcome


def read_junit(path: Path, outcome: Outcome) -> None:
    if not path.exists():
        outcome.problems.append(f"no junit XML ({path.name})")
        return
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        outcome.problems.append(f"unreadable junit XML: {exc}")
        return
    for case in root.iter("testcase"):
        kinds = {child.tag: child for child in case}
        if "failure" in kinds:
            outcome.failed += 1
        elif "error" in kinds:
            outcome.errors += 1
        elif "skipped" in kinds:
            skip = kinds["skipped"]
            message = skip.get("message", "")
            if skip.get("type") == "pytest.xfail":
                outcome.xfailed += 1
            elif TOPOLOGY_SKIP_PREFIX in message:
                outcome.skipped_topology += 1
            else:
                outcome.skipped_other.append(f"{case.get('classname')}.{case.get('name')}: {message}")
        else:
            outcome.passed += 1


# --- main ------------------------------------------------------------------

def prune(keep: int = 8) -> None:
    runs = sorted(OUT.glob("run-*"))
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="Arguments after -- go to pytest inside the guest.")
    p.add_argument("--topology", action="append", choices=sorted(TOPOLOGIES),
                   help="run only this topology (repeatable); default: all")
    p.add_argument("-k", dest="keyword", help="pytest -k expression")
    p.add_argument("-x", "--exitfirst", action="store_true", help="pytest -x")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("NUMAD_VM_TIMEOUT", 1500)),
                   help="seconds per topology, boot included (default 1500: the quiet-machine run takes 2-8 min, a loaded one much more)")
    p.add_argument("--strict", action="store_true", default=os.environ.get("CI", "") == "true",
                   help="fail on skips other than topology skips (default under CI=true)")
    p.add_argument("--no-setup", action="store_true",
                   help="trust NUMAD_VM_KERNEL/NUMAD_VM_VNG instead of running setup.sh")
    p.add_argument("--verbose", action="store_true", help="also stream the guest console")
    args = p.parse_args(argv)

    names = args.topology or list(TOPOLOGIES)
    pytest_args = list(extra)
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    if args.exitfirst:
        pytest_args.append("-x")
    filtered = bool(args.keyword) or bool(extra)

    env = setup_env(args.no_setup)
    python = venv_python()
    OUT.mkdir(parents=True, exist_ok=True)
    prune()
    rundir = OUT / time.strftime(f"run-%Y%m%d-%H%M%S-{os.getpid()}")
    print(f"vm: kernel {env['NUMAD_VM_KERNEL']}, results in {rundir}", flush=True)

    t0 = time.monotonic()
    outcomes = [run_topology(n, env, python, rundir, pytest_args, args.timeout, args.verbose) for n in names]

    print("\n== VM test summary", flush=True)
    bad = False
    for o in outcomes:
        print("   " + o.line(), flush=True)
        if o.ran == 0 and not filtered:
            o.problems.append("ran zero tests")
        elif o.ran == 0:
            print(f"   {o.name}: ran zero tests (allowed: filtered with -k/--)", flush=True)
        if o.failed or o.errors:
            o.problems.append(f"{o.failed} failed, {o.errors} errors")
        if o.skipped_other:
            (o.problems if args.strict else []).append(f"{len(o.skipped_other)} skipped for another reason")
            for s in o.skipped_other:
                print(f"     skipped: {s}", flush=True)
        for problem in o.problems:
            print(f"   FAIL {o.name}: {problem}", flush=True)
        bad = bad or bool(o.problems)
    total_pass = sum(o.passed for o in outcomes)
    total_fail = sum(o.failed + o.errors for o in outcomes)
    total_skip = sum(o.skipped_topology + len(o.skipped_other) for o in outcomes)
    print(f"   topologies: {', '.join(names)}; {time.monotonic() - t0:.0f}s; logs: {rundir}", flush=True)
    if bad and total_fail == 0:
        total_fail = sum(1 for o in outcomes if o.problems)  # count broken topologies as failures
    print(f"vm: {total_pass} passed, {total_fail} failed, {total_skip} skipped", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
