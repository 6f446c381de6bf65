#!/usr/bin/env python3
"""Run tests/numa inside QEMU guests: several kernels, real multi-node NUMA topologies.

Each (kernel, topology) pair boots ONE guest (virtme-ng, TCG: --disable-kvm)
that runs the whole tests/numa group with the project's venv; results come
back through a shared --rwdir: the pytest log (streamed here while it runs),
a junit XML and an rc file.  vng's own exit code is not trusted.  The pairs
and the topologies are in tests/vm/topologies.py; docs/kernels.md says what
runs where and how long it takes.

    python tests/vm/run.py                                 # the default matrix
    python tests/vm/run.py --list                          # ... print it
    python tests/vm/run.py --topology two -k thp           # `two` on each kernel of the matrix
    python tests/vm/run.py --kernel 6.12 --topology tiered # exactly that pair
    python tests/vm/run.py --kernel 6.12 -- tests/numa/test_cli.py -x

Fails (exit 1) if any guest failed, errored, timed out, did not boot (or its
kernel could not be installed), or ran zero tests.  Under CI=true (or
--strict) a skip for any reason other than "this test needs another
topology/kernel" fails too.  Stdlib only.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from guest_runner import Tail, boot_failure, last_lines, run_guest
from topologies import DEFAULT_MATRIX, KERNELS, TOPOLOGIES, vng_args

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# Results come back through vng's --rwdir and the guest runs `bash SCRIPT` from --exec: neither
# survives whitespace in a path, so a checkout under "a dir with spaces" keeps its results in
# /var/tmp (not /tmp: the guest mounts its own tmpfs there).
OUT = HERE / "out" if not any(c.isspace() for c in str(HERE)) else Path(f"/var/tmp/numad-py-vm-out-{os.getuid()}")
# Skips that only say "this test belongs to another guest": counted apart,
# never a failure.  Must match tests/numa/conftest.py.
ELSEWHERE_SKIP_PREFIXES = ("needs VM topology", "needs VM kernel")
# Directories vng 1.42 already overlays in the guest (writable there, host untouched).
VNG_OVERLAYS = ("/etc", "/lib", "/home", "/opt", "/srv", "/usr", "/var", "/tmp")


# --- setup -----------------------------------------------------------------

def setup_env(kernels: list[str], skip_setup: bool) -> dict[str, str]:
    """vng and one vmlinuz per kernel: from the environment, or tests/vm/setup.sh --print-env.

    NUMAD_VM_KERNEL (no suffix) still names a 6.1 kernel, as it did when
    there was only one.
    """
    def from_environ(kernel: str) -> str:
        value = os.environ.get(KERNELS[kernel], "")
        return value or (os.environ.get("NUMAD_VM_KERNEL", "") if kernel == "6.1" else "")

    env = {"NUMAD_VM_VNG": os.environ.get("NUMAD_VM_VNG", "")}
    env.update({KERNELS[k]: from_environ(k) for k in kernels})
    if skip_setup and all(env.values()):
        return env
    cmd = ["bash", str(HERE / "setup.sh"), "--print-env"]
    for kernel in kernels:
        cmd += ["--kernel", kernel]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"vm: tests/vm/setup.sh failed (exit {proc.returncode}) for kernel(s) "
                         f"{', '.join(kernels)}: cannot boot the test VMs")
    reported = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    for key in env:
        env[key] = env[key] or reported.get(key, "")
        if not env[key]:
            raise SystemExit(f"vm: setup.sh did not report {key}")
    return env


def venv_python() -> Path:
    for candidate in (os.environ.get("NUMAD_VM_PYTHON"), REPO / ".venv" / "bin" / "python"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise SystemExit(f"vm: no venv at {REPO / '.venv'}: run `make venv` first")


def unreachable_dirs(paths: list[Path]) -> list[Path]:
    """Ancestors of ``paths`` that other users cannot traverse (e.g. /root, mode 0700).

    Tests that run as nobody need the checkout and the venv; the guest script
    makes these traversable in the guest only.
    """
    found: list[Path] = []
    for path in paths:
        for parent in reversed(path.parents):
            if parent not in found and not parent.stat().st_mode & 0o001:
                found.append(parent)
    return found


def overlays_for(blocked: list[Path]) -> list[str]:
    """The guest sees the host's / read-only except vng's overlays: overlay the outermost blocked dirs."""
    def covered(p: Path, by: str) -> bool:
        return p == Path(by) or Path(by) in p.parents
    outer = [p for p in blocked if not any(q != p and q in p.parents for q in blocked)]
    return [str(p) for p in outer if not any(covered(p, d) for d in VNG_OVERLAYS)]


# --- one guest --------------------------------------------------------------

@dataclass
class Outcome:
    kernel: str
    topology: str
    seconds: float = 0.0
    rc: int | None = None
    release: str = ""
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped_elsewhere: int = 0
    skipped_other: list[str] = field(default_factory=list)
    xfailed: int = 0
    problems: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)   # "test: first lines of the message"
    problems_retried: list[str] = field(default_factory=list)   # boot crashes booted through again

    @property
    def name(self) -> str:
        return f"{self.kernel}/{self.topology}"

    @property
    def ran(self) -> int:
        return self.passed + self.failed + self.errors

    def line(self) -> str:
        skipped = self.skipped_elsewhere + len(self.skipped_other)
        text = (f"kernel {self.kernel} ({self.release or 'did not report'}), topology {self.topology}: "
                f"{self.passed} passed, {self.failed} failed, {self.errors} errors, "
                f"{skipped} skipped ({self.skipped_elsewhere} for another kernel/topology)")
        if self.xfailed:
            text += f", {self.xfailed} xfailed"
        return text + f", pytest rc={self.rc}, {self.seconds:.0f}s"


def guest_script(kernel: str, topology: str, rwdir: Path, python: Path, pytest_args: list[str],
                 blocked: list[Path]) -> str:
    q = shlex.quote
    stem = rwdir.name
    env = {
        "NUMAD_VM_TOPOLOGY": topology,
        "NUMAD_VM_KERNEL_NAME": kernel,
        "NUMAD_VM_SPEC": json.dumps(TOPOLOGIES[topology]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    exports = " ".join(f"{k}={q(v)}" for k, v in env.items())
    # Paths given after -- replace the default tests/numa; a hung test dumps
    # its stack after faulthandler_timeout instead of only timing out.
    paths = [] if any(a.startswith("tests/") for a in pytest_args) else ["tests/numa"]
    pytest = [str(python), "-m", "pytest", *paths, "-p", "no:cacheprovider", "-rfEx",
              "-o", "faulthandler_timeout=240", f"--junitxml={rwdir / (stem + '.xml')}", *pytest_args]
    lines = [
        "#!/bin/bash",
        f"rc={q(str(rwdir / (stem + '.rc')))}",
        f"log={q(str(rwdir / (stem + '.log')))}",
    ]
    # Loopback: virtme's init brings `lo` up only with iproute2's `ip`, which a minimal root
    # lacks (then 127.0.0.1 is "Network is unreachable"); busybox-static always has the applet.
    lines.append("ip link set lo up 2>/dev/null || busybox ip link set lo up "
                 "|| echo 'guest: cannot bring lo up' >>\"$log\"")
    # Tests that run as nobody need to reach the checkout and the venv; a
    # checkout under /root (0700) is not.  These dirs are overlays in the
    # guest (vng's, or --overlay-rwdir from run.py): the host keeps its modes.
    for d in blocked:
        lines.append(f"chmod o+x {q(str(d))} || echo 'guest: cannot chmod o+x {d}' >>\"$log\"")
    lines += [
        f"cd {q(str(REPO))} || {{ echo 'guest: cannot cd to the repo' >>\"$log\"; echo 96 >\"$rc\"; exit 0; }}",
        # Kernel NUMA balancing would move test pages on its own and make
        # placement assertions a race; the daemon's reporting of it is tested
        # on the host.  Off for the whole guest.
        "echo 0 >/proc/sys/kernel/numa_balancing 2>/dev/null",
        "echo \"guest: $(uname -r), nodes $(cat /sys/devices/system/node/online), $(nproc) cpus, "
        "numa_balancing $(cat /proc/sys/kernel/numa_balancing)\" >>\"$log\"",
        f"export {exports}",
        f"{' '.join(q(a) for a in pytest)} >>\"$log\" 2>&1",
        "echo $? >\"$rc\"",
        "",
    ]
    return "\n".join(lines)


def run_one(kernel: str, topology: str, env: dict, python: Path, rundir: Path, pytest_args: list[str],
            timeout: float, verbose: bool) -> Outcome:
    spec = TOPOLOGIES[topology]
    stem = f"{kernel}-{topology}"
    rwdir = rundir / stem
    rwdir.mkdir(parents=True)
    blocked = unreachable_dirs([REPO, python, python.resolve()])
    script = rwdir / "guest.sh"
    script.write_text(guest_script(kernel, topology, rwdir, python, pytest_args, blocked))
    console = rwdir / "console.log"
    overlays = [f"--overlay-rwdir={d}" for d in overlays_for(blocked)]
    cmd = [env["NUMAD_VM_VNG"], "-v", "-r", env[KERNELS[kernel]], "--disable-kvm",
           *vng_args(spec), *overlays, "--rwdir", str(rwdir), "--exec", f"bash {script}"]
    print(f"== {kernel}/{topology}: booting kernel {kernel} in a {len(spec['nodes'])}-node guest "
          f"({' '.join(shlex.quote(a) for a in vng_args(spec))})", flush=True)
    if verbose:
        print("   " + " ".join(shlex.quote(c) for c in cmd), flush=True)

    outcome = Outcome(kernel, topology)
    prefix = f"[{kernel}/{topology}] "
    tail = Tail(rwdir / f"{stem}.log", prefix)
    tails = [tail, Tail(console, f"[{kernel}/{topology} console] ")] if verbose else [tail]
    timed_out, outcome.seconds = run_guest(cmd, console, tails, timeout, REPO)
    outcome.problems_retried = [boot_failure(c) for c in sorted(rwdir.glob("console.boot*.log"))]

    if timed_out:
        outcome.problems.append(f"timed out after {timeout:.0f}s")
    if not tail.seen:
        outcome.problems.append(f"kernel {kernel} never started the tests (boot failure?)")
        print(f"{prefix}--- last console lines ({console}) ---", flush=True)
        for line in last_lines(console, 40):
            print(f"{prefix}  {line}", flush=True)
    outcome.release = guest_release(rwdir / f"{stem}.log")

    rc_file = rwdir / f"{stem}.rc"
    if rc_file.exists() and rc_file.read_text().strip().lstrip("-").isdigit():
        outcome.rc = int(rc_file.read_text().strip())
    else:
        outcome.problems.append(f"no exit code from the guest ({rc_file.name} missing)")

    read_junit(rwdir / f"{stem}.xml", outcome)
    if outcome.rc not in (None, 0) and not (outcome.failed or outcome.errors):
        outcome.problems.append(f"pytest exited {outcome.rc}"
                                + (" (no tests collected)" if outcome.rc == 5 else ""))
    return outcome


def guest_release(log: Path) -> str:
    """The `uname -r` the guest script wrote first: proof of which kernel ran."""
    try:
        head = log.read_text(errors="replace").splitlines()[:5]
    except FileNotFoundError:
        return ""
    for line in head:
        if line.startswith("guest: "):
            return line.split()[1].rstrip(",")
    return ""


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
        if "failure" in kinds or "error" in kinds:
            if "failure" in kinds:
                outcome.failed += 1
            else:
                outcome.errors += 1
            # CI shows the summary's tail, not the guest's console: say there what failed.
            bad = kinds.get("failure", kinds.get("error"))
            message = " ".join((bad.get("message") or bad.text or "").split())
            outcome.failures.append(f"{case.get('name')}: {message[:400]}")
        elif "skipped" in kinds:
            skip = kinds["skipped"]
            message = skip.get("message", "")
            if skip.get("type") == "pytest.xfail":
                outcome.xfailed += 1
            elif any(prefix in message for prefix in ELSEWHERE_SKIP_PREFIXES):
                outcome.skipped_elsewhere += 1
            else:
                outcome.skipped_other.append(f"{case.get('classname')}.{case.get('name')}: {message}")
        else:
            outcome.passed += 1


# --- main ------------------------------------------------------------------

def byte_compile(python: Path) -> None:
    """Write the checkout's bytecode before the guests boot.  The guest sees the checkout
    read-only and runs with PYTHONDONTWRITEBYTECODE, so without this every interpreter it
    starts (each daemon, each CLI call) compiles numad_py again under emulation."""
    subprocess.run([str(python), "-m", "compileall", "-q", "-j", "0", str(REPO / "numad_py"), str(REPO / "tests")],
                   check=False, stdout=subprocess.DEVNULL)


def prune(keep: int = 8) -> None:
    runs = sorted(OUT.glob("run-*"))
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def select_pairs(kernels: list[str] | None, topologies: list[str] | None) -> list[tuple[str, str]]:
    """Both given: every kernel x topology.  One given: the default matrix's pairs with it."""
    if kernels and topologies:
        return [(k, t) for k in dict.fromkeys(kernels) for t in dict.fromkeys(topologies)]
    pairs = [(k, t) for k, t in DEFAULT_MATRIX
             if (not kernels or k in kernels) and (not topologies or t in topologies)]
    if not pairs:
        raise SystemExit(f"vm: the default matrix has no pair for {kernels or topologies}; "
                         "name both --kernel and --topology")
    return pairs


def report(outcomes: list[Outcome], strict: bool, filtered: bool, seconds: float, rundir: Path) -> bool:
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
            (o.problems if strict else []).append(f"{len(o.skipped_other)} skipped for another reason")
            for s in o.skipped_other:
                print(f"     skipped: {s}", flush=True)
        for crash in o.problems_retried:
            print(f"   {o.name}: booted again after the guest died at boot: {crash}", flush=True)
        for problem in o.problems:
            print(f"   FAIL {o.name}: {problem}", flush=True)
        for failure in o.failures:
            print(f"     failed: {failure}", flush=True)
        bad = bad or bool(o.problems)
    total_pass = sum(o.passed for o in outcomes)
    total_fail = sum(o.failed + o.errors for o in outcomes)
    total_skip = sum(o.skipped_elsewhere + len(o.skipped_other) for o in outcomes)
    print(f"   guests: {', '.join(o.name for o in outcomes)}; {seconds:.0f}s; logs: {rundir}", flush=True)
    if bad and total_fail == 0:
        total_fail = sum(1 for o in outcomes if o.problems)  # count broken guests as failures
    print(f"vm: {total_pass} passed, {total_fail} failed, {total_skip} skipped", flush=True)
    return bad


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0],
                                epilog="Arguments after -- go to pytest inside the guest.")
    p.add_argument("--kernel", action="append", choices=sorted(KERNELS),
                   help="run only on this kernel (repeatable); default: the matrix's")
    p.add_argument("--topology", action="append", choices=sorted(TOPOLOGIES),
                   help="run only this topology (repeatable); default: the matrix's")
    p.add_argument("--list", action="store_true", help="print the (kernel, topology) pairs and exit")
    p.add_argument("-k", dest="keyword", help="pytest -k expression")
    p.add_argument("-x", "--exitfirst", action="store_true", help="pytest -x")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("NUMAD_VM_TIMEOUT", 2700)),
                   help="seconds per guest, boot included; only a hang guard (default 2700: the longest "
                        "guest, 6.1/two, took 1,360 s on a quiet machine, near the old 1,500 under load)")
    p.add_argument("--strict", action="store_true", default=os.environ.get("CI", "") == "true",
                   help="fail on skips other than another-kernel/topology skips (default under CI=true)")
    p.add_argument("--no-setup", action="store_true",
                   help="trust NUMAD_VM_VNG and NUMAD_VM_KERNEL_<6_1|6_12> instead of running setup.sh")
    p.add_argument("--jobs", type=int, default=int(os.environ.get("NUMAD_VM_JOBS", 1)), metavar="N",
                   help="guests booted at once (default 1, or $NUMAD_VM_JOBS).  On this 2-core machine two "
                        "gained nothing: each guest ran 1.7-1.9x slower beside the other (docs/kernels.md)")
    p.add_argument("--verbose", action="store_true", help="also stream the guest console")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be at least 1")

    pairs = select_pairs(args.kernel, args.topology)
    if args.list:
        for kernel, topology in pairs:
            print(f"{kernel} {topology}")
        return 0
    pytest_args = list(extra)
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    if args.exitfirst:
        pytest_args.append("-x")
    filtered = bool(args.keyword) or bool(extra)

    env = setup_env(list(dict.fromkeys(k for k, _ in pairs)), args.no_setup)
    python = venv_python()
    byte_compile(python)
    OUT.mkdir(parents=True, exist_ok=True)
    prune()
    rundir = OUT / time.strftime(f"run-%Y%m%d-%H%M%S-{os.getpid()}")
    for kernel in dict.fromkeys(k for k, _ in pairs):
        print(f"vm: kernel {kernel}: {env[KERNELS[kernel]]}", flush=True)
    print(f"vm: results in {rundir}", flush=True)

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # map keeps the matrix's order
        outcomes = list(pool.map(lambda pair: run_one(*pair, env, python, rundir, pytest_args,
                                                      args.timeout, args.verbose), pairs))
    bad = report(outcomes, args.strict, filtered, time.monotonic() - t0, rundir)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
