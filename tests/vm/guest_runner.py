"""Run one virtme-ng guest to the end: stream what it writes, bound its time.

Shared by the three things that boot guests (tests/vm/run.py, the systemd
end-to-end run, bench/run.py).  vng and its qemu start in their own process
group so a timeout kills the whole tree, not only the vng wrapper.  Stdlib only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class Tail:
    """Print what a file grows by, line by line, with a prefix."""

    def __init__(self, path: Path, prefix: str):
        self.path, self.prefix, self.pos, self.partial = path, prefix, 0, ""

    def poll(self, final: bool = False) -> None:
        try:
            with open(self.path, errors="replace") as f:
                f.seek(self.pos)
                chunk = f.read()
                self.pos = f.tell()
        except FileNotFoundError:
            return
        lines = (self.partial + chunk).split("\n")
        self.partial = "" if final else lines.pop()
        for line in lines:
            if line or final:
                print(f"{self.prefix}{line}", flush=True)

    @property
    def seen(self) -> bool:
        return self.pos > 0


BOOT_RETRIES = 1         # a guest that died while booting, before it ran anything, boots once more


def run_guest(cmd: list[str], console: Path, tails: list[Tail], timeout: float, cwd: Path) -> tuple[bool, float]:
    """Run ``cmd`` with its output in ``console``; returns (timed out, seconds).

    TCG now and then crashes a booting kernel (seen on 6.12: "Oops: int3" in
    sched_clock_cpu while the kernel patches its code), or the guest ends
    silently while booting (seen on 6.1, 2026-12-01: the console stopped in PCI
    enumeration 2.7 s into the boot, no panic, vng gone 16 s after its start),
    before any test or benchmark ran.  Such a guest, which wrote nothing to
    its tails, boots once more; its console is kept as ``console.bootN.log``."""
    t0 = time.monotonic()
    timed_out = False
    for attempt in range(1 + BOOT_RETRIES):
        timed_out = _run_once(cmd, console, tails, timeout - (time.monotonic() - t0), cwd)
        crash = None if timed_out or any(t.seen for t in tails if t.path != console) else boot_failure(console)
        if crash is None or attempt == BOOT_RETRIES:
            break
        prefix = tails[0].prefix if tails else ""
        print(f"{prefix}the guest died while booting ({crash}); booting it once more", flush=True)
        console.rename(console.with_name(f"{console.stem}.boot{attempt + 1}{console.suffix}"))
    return timed_out, time.monotonic() - t0


def _run_once(cmd: list[str], console: Path, tails: list[Tail], timeout: float, cwd: Path) -> bool:
    t0 = time.monotonic()
    timed_out = False
    with open(console, "w") as con:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=con, stderr=subprocess.STDOUT,
                                cwd=str(cwd), start_new_session=True, env=vng_env(cmd[0]))
        while proc.poll() is None:
            time.sleep(0.5)
            for tail in tails:
                tail.poll()
            if time.monotonic() - t0 > timeout:
                timed_out = True
                _kill_group(proc)
    for tail in tails:
        tail.poll(final=True)
    return timed_out


def boot_failure(console: Path) -> str:
    """Why a guest that ran nothing ended: its kernel's Oops/panic line, else its last console line."""
    last = [line for line in last_lines(console, 5) if line.strip()]
    return boot_panic(console) or "no panic; last console line: " + (last[-1].strip() if last else "(empty)")


def boot_panic(console: Path) -> str | None:
    """The first Oops/panic line of a guest console, if the kernel crashed."""
    for line in last_lines(console, 400):
        if "Kernel panic" in line or "Oops:" in line:
            return line.split("] ", 1)[-1].strip()
    return None


def vng_env(vng: str) -> dict[str, str]:
    """vng 1.42 starts ``virtme-run`` through the shell: its venv's bin/ must be on PATH."""
    env = dict(os.environ)
    bin_dir = str(Path(vng).resolve().parent) if os.sep in vng else ""
    if bin_dir and bin_dir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    return env


def _kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def last_lines(path: Path, count: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-count:]
    except FileNotFoundError:
        return []
