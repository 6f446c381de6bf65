#!/usr/bin/env python3
"""End-to-end: systemd/numad-py.service under a real systemd, in a 2-node guest.

ONE boot (virtme-ng, TCG): systemd is PID 1 (vng --systemd) and a
``systemd.run=`` option makes tests/e2e/guest_boot.sh the only unit started
(``systemd.unit=kernel-command-line.service``), so the host's other enabled
services (postgresql, prometheus, ...) do not boot in the guest.  (The
``systemd.run=`` reaches systemd-run-generator through ``systemd.setenv=
SYSTEMD_PROC_CMDLINE=...``, see vng_command() for why.)  It puts a tmpfs on
/tmp, overlays /etc and /var, mounts the rwdir, and runs guest_systemd.py, which installs the
unit + config, then checks READY=1/active, a workload moved 0 -> 1, the
metrics, a reload with a broken rule, and a clean stop.  systemd powers the
guest off when that script ends.

    python tests/e2e/run_systemd_vm.py [--timeout 900] [--verbose]

Results: tests/e2e/out/run-*/ (result.json, result.xml, journal.txt,
guest.log, console.log).  Prints a summary; exits 1 if any check failed or
the guest gave no result.  Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = HERE / "out"
sys.path.insert(0, str(REPO / "tests" / "vm"))
from guest_runner import Tail, last_lines, run_guest  # noqa: E402  (the shared guest runner)

TWO_NODES = ["--cpus", "4", "-m", "2G", "--numa", "1G,cpus=0-1", "--numa", "1G,cpus=2-3"]


def setup_env() -> dict[str, str]:
    """Kernel and vng: from NUMAD_VM_KERNEL/NUMAD_VM_VNG, else tests/vm/setup.sh --print-env."""
    if os.environ.get("NUMAD_VM_KERNEL") and os.environ.get("NUMAD_VM_VNG"):
        return {k: os.environ[k] for k in ("NUMAD_VM_KERNEL", "NUMAD_VM_VNG")}
    proc = subprocess.run(["bash", str(REPO / "tests" / "vm" / "setup.sh"), "--print-env"],
                          stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"e2e: tests/vm/setup.sh failed (exit {proc.returncode})")
    env = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    return {k: os.environ.get(k) or env[k] for k in ("NUMAD_VM_KERNEL", "NUMAD_VM_VNG")}


def ensure_lib_modules() -> None:
    """vng --systemd's early init runs ``mkdir -p /lib/modules`` on the guest root,
    which is the host's / exported read-only: without /lib/modules on the host
    the guest panics ("Attempted to kill init").  Every Debian host with a
    kernel package has it; containers often do not: create the empty directory."""
    if Path("/lib/modules").is_dir():
        return
    try:
        Path("/lib/modules").mkdir(mode=0o755)
        print("e2e: created an empty /lib/modules on the host (vng --systemd needs it to exist)", flush=True)
    except OSError as exc:
        raise SystemExit(f"e2e: /lib/modules is missing on the host and cannot be created ({exc}); "
                         "vng --systemd needs it: `sudo mkdir /lib/modules`") from None


def vng_command(env: dict, rwdir: Path, python: Path) -> list[str]:
    boot = HERE / "guest_boot.sh"
    # What systemd's generators (systemd-run-generator) must see as "the kernel
    # command line"; see the systemd.setenv= comment below.
    generator_cmdline = " ".join([
        # systemd-run-generator turns this into kernel-command-line.service ...
        f"systemd.run={boot}",
        # ... whose end powers the guest off, pass or fail.
        "systemd.run_success_action=poweroff-force",
        "systemd.run_failure_action=poweroff-force",
    ])
    kernel_args = [
        # The guest root is the host's /, and a container image has /.dockerenv:
        # systemd would then think it runs in Docker and read its "kernel command
        # line" from /proc/1/cmdline (ignoring everything below; the getty
        # generator, which vng's own --exec relies on, is skipped too).  An EMPTY
        # $container in PID 1's environment (a kernel "x=" option becomes init's
        # environment) is systemd's documented "not in a container" -- for PID 1.
        "container=",
        # The generators are not PID 1: systemd 252's detect_container() reads
        # PID 1's $container from /proc/1/environ there, and an EMPTY value is
        # taken as an unknown container ("container-other"): the generators read
        # /proc/1/cmdline ("/sbin/init") and systemd-run-generator never sees
        # systemd.run= ("Unit kernel-command-line.service not found").  Generators
        # do get the manager's environment (systemd.setenv=), and proc_cmdline()
        # prefers $SYSTEMD_PROC_CMDLINE over both files: hand them their options there.
        f"systemd.setenv=SYSTEMD_PROC_CMDLINE={generator_cmdline}",
        # PID 1 (which does read /proc/cmdline) boots only that unit (plus its
        # sysinit.target/basic.target dependencies): the host's enabled services
        # (postgresql, prometheus, ...) are not started in the guest.
        "systemd.unit=kernel-command-line.service",
        "systemd.show_status=0",
        f"numad_e2e.out={rwdir}",
        f"numad_e2e.python={python}",
    ]
    cmd = [env["NUMAD_VM_VNG"], "-v", "-r", env["NUMAD_VM_KERNEL"], "--disable-kvm", *TWO_NODES,
           "--systemd", "--rwdir", str(rwdir),
           # Not mounted by vng in this boot (guest_boot.sh does it), but makes
           # vng put the overlay module in the initramfs.
           "--overlay-rwdir=/etc"]
    for arg in kernel_args:
        # vng shlex-splits each --append; the kernel (and systemd) take a
        # double-quoted "a b" option as one word, which vng adds for spaces.
        cmd += ["--append", shlex.quote(arg)]
    return cmd + ["--exec", "true"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=float(os.environ.get("NUMAD_E2E_TIMEOUT", 900)),
                   help="seconds for the whole boot (default 900)")
    p.add_argument("--verbose", action="store_true", help="stream the guest console too")
    p.add_argument("--out", type=Path, default=None, help="results directory (default tests/e2e/out/run-*)")
    args = p.parse_args(argv)

    python = REPO / ".venv" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"e2e: no venv at {python.parent.parent}: run `make venv` first")
    env = setup_env()
    ensure_lib_modules()
    if args.out:
        rwdir = args.out.resolve()
        rwdir.mkdir(parents=True, exist_ok=True)
    else:
        OUT.mkdir(parents=True, exist_ok=True)
        for old in sorted(OUT.glob("run-*"))[:-5]:
            subprocess.run(["rm", "-rf", str(old)])
        rwdir = OUT / time.strftime(f"run-%Y%m%d-%H%M%S-{os.getpid()}")
        rwdir.mkdir()
    cmd = vng_command(env, rwdir, python)
    print(f"e2e: booting a 2-node guest with systemd as init; results in {rwdir}", flush=True)
    print("e2e: " + " ".join(shlex.quote(c) for c in cmd), flush=True)

    console = rwdir / "console.log"
    tails = [Tail(rwdir / "guest.log", "[guest] ")]
    if args.verbose:
        tails.append(Tail(console, "[console] "))
    timed_out, seconds = run_guest(cmd, console, tails, args.timeout, REPO)

    problems: list[str] = []
    if timed_out:
        problems.append(f"timed out after {args.timeout:.0f}s")
    result_path = rwdir / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else None
    print("\n== systemd end-to-end summary", flush=True)
    if result is None:
        problems.append("no result.json from the guest (boot failure?)")
        print(f"   last console lines ({console}):", flush=True)
        for line in last_lines(console, 30):
            print("   | " + line, flush=True)
    else:
        for c in result["checks"]:
            print(f"   {'PASS' if c['ok'] else 'FAIL'} {c['name']} ({c['seconds']}s)", flush=True)
            if not c["ok"]:
                problems.append(f"{c['name']}: {c['detail'].splitlines()[0] if c['detail'] else ''}")
        if not result["checks"]:
            problems.append("the guest ran no checks")
        timings = {k: result[k] for k in ("start_seconds", "placed_seconds", "stop_seconds") if k in result}
        print(f"   guest: kernel {result.get('kernel')}, checks {result['seconds']}s, {timings}", flush=True)
    rc_file = rwdir / "rc"
    if result is not None and (not rc_file.exists() or rc_file.read_text().strip() != "0"):
        problems.append(f"guest rc {rc_file.read_text().strip() if rc_file.exists() else 'missing'}")
    for problem in dict.fromkeys(problems):
        print(f"   FAIL: {problem}", flush=True)
    print(f"   boot + checks: {seconds:.0f}s; logs: {rwdir}", flush=True)
    summary = {"ok": not problems, "problems": problems, "seconds": round(seconds, 1), "rwdir": str(rwdir),
               "result": result}
    (rwdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"e2e: {'PASS' if not problems else 'FAIL'}", flush=True)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
