"""Side by side with Debian's numad (issue 15), run inside the 2-node guest by guest_bench.py.

One daemon at a time, each on fresh copies of the same workloads:

* busy: N processes of MIB MiB (bench/c/busy_hold.c), allocated interleaved over nodes 0 and 1
  (half their pages on the wrong node whichever node is picked), CPU-busy, plus one process an
  admin placed with `numactl --cpunodebind=1 --membind=1`.  numad runs as `numad -i 5`, with
  no `-p PID`, as Debian's service runs it (`numad -i 15`): the workloads are over its 300 MB
  threshold, so its scan of /proc finds them (_start_numad says why not `-p`).  One more of
  the same size was placed by numad-py's fork shim (`numad-py exec --spread 0`: its parent
  forks it with the policy prefer:0, its CPUs free): a daemon undoes that placement if most
  of its pages leave node 0.  numad-py runs
  with one rule `nodes = "auto"`, `auto = true`, `scan_interval = "5s"` matching the
  workloads' comm, and `max_stall` = its default × the VM's memcpy slowdown; `numad-py-unscaled`
  runs the busy case again at the unscaled default.  Sampled every 0.5 s: each workload's pages per
  node (/proc/PID/numa_maps), the daemon's utime+stime; around the run: /proc/vmstat
  pgmigrate_success.
* handover: each daemon started on the other's end state (the busy case's workloads, left
  running): numad-py for HANDOVER_PY s after numad's window, numad for a whole window after
  numad-py's (numad waits minutes before it moves anything): the workloads the first daemon
  had placed that the second moved off their node, and the pages it migrated.
* idle: IDLE idle processes (bench/c/spawn_idle.c); the daemon's CPU seconds over the window.

Each window starts once the daemon has started (its first log line, at most STARTUP_LIMIT):
numad-py's start-up under TCG beside CPU-busy workloads took longer than a 300 s window.
Seconds and CPU to that point are reported apart (n1c, `startup_cpu`); pages migrated count
from the launch.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from numad_py import procfs
from numad_py.errors import NumaError
from numad_py.stall import DEFAULT_MAX_STALL as DEFAULT_STALL

from numad_compare import (all_settled, cpu_after_placement, cpu_ticks, crash_reason, node_pages, ratio,
                           settle_time, share, stale_numad_pidfile, value_when_placed, vmstat_value)

NUMAD = "/usr/bin/numad"
NUMAD_PIDFILE = Path("/var/run/numad.pid")
NUMAD_PY = str(Path(sys.executable).parent / "numad-py")
COMM = "busy_hold"
PLACED_NODE, PLACED_CPUS_NODE = 1, 1
SHIM_NODE = 0      # where the fork shim puts its workload
HANDOVER_PY = 60.0  # s: numad-py acts within a few ticks; numad gets a whole window
# numad-py's files (status.json and the node table, written every tick) on a tmpfs, as under
# systemd (RuntimeDirectory= is /run/numad-py): the guest's /tmp is an overlay, where the
# same status write cost twice the CPU (2.8 against 1.4 ms a write, beside busy workloads).
GUEST_TMP = Path("/run/numad-bench-side")
KHUGEPAGED_SLEEP = Path("/sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs")
TICK = 100.0  # USER_HZ on Linux
# numad-py at its default bound beside the one scaled to the VM: both run the busy case.
RAW_BOUND = "numad-py-unscaled"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] numad-side: {msg}", flush=True)


def read(pid: int | str, name: str) -> str | None:
    try:
        return procfs.read_text(pid, name)
    except NumaError:  # ProcessGone / PermissionDenied: a sample missed, not a failure
        return None


def cpu_seconds(pid: int) -> float | None:
    text = read(pid, "stat")
    return None if text is None else cpu_ticks(text) / TICK


def pages_of(pid: int) -> dict[int, int]:
    text = read(pid, "numa_maps")
    return {} if text is None else node_pages(text)


def migrated() -> int:
    return vmstat_value(Path("/proc/vmstat").read_text(), "pgmigrate_success")


def cpus_allowed(pid: int) -> str | None:
    text = read(pid, "status")
    return None if text is None else procfs.parse_status_field(text, "Cpus_allowed_list")


# --- the daemons ------------------------------------------------------------------

class DaemonDidNotStart(RuntimeError):
    pass


def dmesg() -> list[str]:
    """The kernel's log lines (the guest runs as root); [] when unreadable."""
    p = subprocess.run(["dmesg"], capture_output=True, text=True)
    return p.stdout.splitlines() if p.returncode == 0 else []


class Daemon:
    """One daemon run: start() → pid to sample; stop() → its log text."""

    def __init__(self, name: str, tmp: Path, *, max_stall: float = DEFAULT_STALL):
        self.name, self.tmp, self.out_dir, self.pid = name, tmp, tmp, 0
        self.max_stall = max_stall
        self.proc: subprocess.Popen | None = None
        self.log_path = Path("/var/log/numad.log") if name == "numad" else GUEST_TMP / tmp.name / "numad-py.log"
        self.log_start = self.log_size()
        self.comm = "numad" if name == "numad" else "numad-py"   # as the kernel names it in dmesg

    def alive(self) -> bool:
        """False once it exited (a zombie still has a /proc/PID/stat)."""
        if self.proc is not None:
            return self.proc.poll() is None
        stat = read(self.pid, "stat")
        return stat is not None and stat.rpartition(")")[2].split()[0] != "Z"

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def start(self) -> int:
        self.tmp.mkdir(parents=True, exist_ok=True)
        if self.name == "numad":
            return self._start_numad()
        return self._start_numad_py()

    def _start_numad(self) -> int:
        # No `-p PID`: numad 0.5 can read a process on its `-p` list twice in one update
        # (its /proc scan, then its list) within one hundredth of a second, and then divides
        # by the difference of the two time stamps, 0 (numad+0x3c2e, "trap divide error").
        # Seen in a bare 2-node guest: `-i 1:1` with four `-p` died in both tries; without
        # `-p` the kernel logged no fault in 90 s, in both. Debian's service (`numad -i 15`)
        # and libvirt pass no `-p`.
        self._remove_stale_pidfile()
        before = set(procfs.pids())
        args = [NUMAD, "-i", "5"]
        # numad forks and its parent exits; a file, not a pipe, in case the child keeps stdio open.
        with open(self.tmp / "numad.start", "w") as f:
            f.write(f"{args}\n")
            f.flush()
            rc = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, timeout=60).returncode
        for _ in range(50):
            found = [p for p in procfs.pids() if p not in before and (read(p, "comm") or "").strip() == "numad"]
            if found:
                self.pid = found[0]
                return self.pid
            time.sleep(0.1)
        raise DaemonDidNotStart(f"numad did not stay up: rc {rc}: {(self.tmp / 'numad.start').read_text()[-300:]}")

    def _remove_stale_pidfile(self) -> None:
        try:
            text = NUMAD_PIDFILE.read_text()
        except FileNotFoundError:
            return
        pid = text.split()[0] if text.split() else ""
        comm = read(pid, "comm") if pid.isdigit() else None
        if stale_numad_pidfile(text, comm):
            log(f"removing {NUMAD_PIDFILE} left by a numad that died (it names {pid or 'nothing'}: {comm or 'gone'})")
            NUMAD_PIDFILE.unlink()

    def _start_numad_py(self) -> int:
        # Its files live in the guest (GUEST_TMP): binding the control socket on the 9p run
        # directory fails with ENXIO (seen: the daemon died at startup).
        t = self.tmp = GUEST_TMP / self.tmp.name
        shutil.rmtree(t, ignore_errors=True)
        (t / "run").mkdir(parents=True)
        self.log_path = t / "numad-py.log"
        (t / "rules.d").mkdir(exist_ok=True)
        conf = t / "numad-py.toml"
        conf.write_text(
            f'[daemon]\nscan_interval = "5s"\nmax_stall = "{self.max_stall * 1e3:.0f}ms"\nstate_dir = "{t}/state"\nruntime_dir = "{t}/run"\n'
            f'[metrics]\nlisten = "127.0.0.1:0"\n[control]\nsocket = "{t}/run/control.sock"\n'
            f'[[rule]]\nname = "bench-auto"\nmatch.comm = "{COMM}"\nnodes = "auto"\nauto = true\n')
        self.logf = open(t / "numad-py.log", "w")
        self.proc = subprocess.Popen([NUMAD_PY, "run", "--config", str(conf)], stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        return self.pid

    def stop(self) -> str:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.logf.close()
            text = self.log_path.read_text()
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "numad-py.log").write_text(text)  # the guest's /tmp does not outlive it
            return text[-6000:]
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            for _ in range(100):
                if read(self.pid, "stat") is None:
                    break
                time.sleep(0.1)
        logfile = Path("/var/log/numad.log")
        text = logfile.read_text(errors="replace")[-6000:] if logfile.exists() else "(no /var/log/numad.log)"
        (self.tmp / "numad.log").write_text(text)
        return text


# --- workloads --------------------------------------------------------------------

def start_busy(bindir: Path, mib: int, count: int) -> tuple[list[subprocess.Popen], list[int]]:
    """``count`` interleaved workloads, then the numactl-placed one, then the shim-placed one:
    their pids in that order."""
    busy = str(bindir / "busy_hold")
    numactl = shutil.which("numactl") or "numactl"
    argvs = [[busy, str(mib), "interleave"] for _ in range(count)]
    argvs.append([numactl, f"--cpunodebind={PLACED_CPUS_NODE}", f"--membind={PLACED_NODE}", busy, str(mib), "keep"])
    # `; :` makes the shell fork busy_hold rather than exec it: the shim places forked children.
    argvs.append([NUMAD_PY, "exec", f"--spread={SHIM_NODE}", "--", "sh", "-c", f'"$0" {mib} keep; :', busy])
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, text=True) for a in argvs]
    infos = [json.loads(p.stdout.readline() or "{}") for p in procs]  # type: ignore[union-attr]
    pids = [i["pid"] for i in infos if "pid" in i]
    if len(pids) != len(procs):
        stop_all(procs, pids)
        raise RuntimeError("a busy_hold workload did not start")
    return procs, pids


def stop_all(procs: list[subprocess.Popen], pids: Sequence[int] = ()) -> None:
    for pid in pids:   # the shim's busy_hold is the shell's child: SIGTERM to the shell leaves it
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


STARTUP_LIMIT = 600.0   # s: numad-py's start-up under TCG next to 4 CPU-busy workloads is minutes


def run_window(daemon: Daemon, window: float, sample: Callable[[float], None]) -> dict:
    """Start the daemon, wait until it has started (its first log line), then call sample(t)
    every 0.5 s for `window` seconds and stop it.  The window measures the daemons at work:
    numad-py's interpreter start-up under TCG (minutes here, beside CPU-busy workloads) would
    otherwise eat the whole window; it is reported apart (`first_log`, `startup_cpu`)."""
    m0 = migrated()
    launched = time.monotonic()
    kernel_log = len(dmesg())
    try:
        dpid = daemon.start()
    except DaemonDidNotStart as exc:
        # numad 0.5 can die of a divide error at its first samples: a result, not the bench's end.
        crash = crash_reason(dmesg()[kernel_log:], daemon.comm)
        log(f"{daemon.name} did not start: {exc} (kernel: {crash or 'nothing logged'})")
        return {"cpu_seconds": 0.0, "cpu_second_half": 0.0, "pages_migrated": migrated() - m0, "first_log": None,
                "startup_cpu": None, "exited_at": 0.0, "crash": crash, "cpu_series": [], "log_tail": str(exc)}
    first_log: float | None = None
    while time.monotonic() - launched < STARTUP_LIMIT and daemon.alive():
        if daemon.log_size() > daemon.log_start:
            first_log = round(time.monotonic() - launched, 2)
            break
        time.sleep(0.5)
    startup_cpu = cpu_seconds(dpid)
    t0 = time.monotonic()
    cpu: list[tuple[float, float]] = []
    exited_at: float | None = None
    try:
        while (t := time.monotonic() - t0) < window:
            c = cpu_seconds(dpid)
            if exited_at is None and (c is None or not daemon.alive()):
                exited_at = round(t, 2)  # the run goes on: the workloads are still sampled
            if c is not None:
                cpu.append((round(t, 2), c))
            sample(t)
            time.sleep(max(0.0, 0.5 - (time.monotonic() - t0 - t)))
        end_cpu = cpu_seconds(dpid)
    finally:
        log_text = daemon.stop()
    moved = migrated() - m0
    crash = crash_reason(dmesg()[kernel_log:], daemon.comm)
    total = end_cpu if end_cpu is not None else cpu[-1][1] if cpu else 0.0
    half = next((c for t, c in cpu if t >= window / 2), total)
    # CPU over the window only; what start-up cost is `startup_cpu`.
    return {"cpu_seconds": total - (startup_cpu or 0.0), "cpu_second_half": total - half, "pages_migrated": moved,
            "first_log": first_log, "startup_cpu": startup_cpu,
            "exited_at": exited_at, "crash": crash,
            "cpu_series": cpu[::4], "log_tail": log_text}


def busy_case(name: str, bindir: Path, tmp: Path, *, mib: int, count: int, window: float,
              max_stall: float, handover: tuple[str, float] | None = None) -> dict:
    """``handover``: (the other daemon, its window), started on this one's end state."""
    procs, pids = start_busy(bindir, mib, count)
    workloads, (placed, shimmed) = pids[:count], pids[count:]
    try:
        time.sleep(2)  # let the workloads reach their loop before anything is measured
        start_placed, start_cpus = pages_of(placed), cpus_allowed(placed)
        start_shimmed = pages_of(shimmed)
        samples: dict[int, list] = {p: [] for p in workloads}

        def sample(t: float) -> None:
            for p in workloads:
                samples[p].append((round(t, 2), pages_of(p)))

        daemon = Daemon("numad-py" if name == RAW_BOUND else name, tmp / f"{name}-busy", max_stall=max_stall)
        res = run_window(daemon, window, sample)
        end_placed, end_cpus = pages_of(placed), cpus_allowed(placed)
        end_shimmed = pages_of(shimmed)
        settled = {p: settle_time(samples[p]) for p in workloads}
        if handover is not None:
            res["handover"] = handover_case(handover, tmp, settled, max_stall)
    finally:
        stop_all(procs, pids)
    undid = share(end_placed, PLACED_NODE) < 0.95 or end_cpus != start_cpus
    res.update(placed={"pid": placed, "pages_before": start_placed, "pages_after": end_placed,
                       "cpus_before": start_cpus, "cpus_after": end_cpus}, undid_placement=undid,
               shimmed={"pid": shimmed, "pages_before": start_shimmed, "pages_after": end_shimmed},
               undid_shim=share(start_shimmed, SHIM_NODE) >= 0.95 and share(end_shimmed, SHIM_NODE) < 0.95,
               settled={p: {"node": n, "seconds": s} for p, (n, s) in settled.items()},
               all_settled_seconds=all_settled([s for _, s in settled.values()]),
               samples={p: s[::4] for p, s in samples.items()})
    return res


def handover_case(handover: tuple[str, float], tmp: Path, settled: dict[int, tuple[int | None, float | None]],
                  max_stall: float) -> dict:
    """The other daemon on the workloads as the first one left them: which of those it had
    placed (>= 95 % on one node at its window's end) end up with less than that there."""
    name, window = handover
    placed = {p: node for p, (node, seconds) in settled.items() if seconds is not None and node is not None}
    log(f"handover: {name} for {window:.0f} s on {len(placed)} placed workload(s)")
    res = run_window(Daemon(name, tmp / f"{name}-handover", max_stall=max_stall), window, lambda t: None)
    moved = [p for p, node in placed.items() if share(pages_of(p), node) < 0.95]
    log(f"handover {name}: moved {len(moved)} of {len(placed)}, {res['pages_migrated']} pages")
    return {"daemon": name, "window": window, "placed_before": len(placed), "moved": len(moved),
            "pages_migrated": res["pages_migrated"], "first_log": res["first_log"],
            "exited_at": res["exited_at"], "log_tail": res["log_tail"]}


def idle_case(name: str, bindir: Path, tmp: Path, *, idle: int, window: float, max_stall: float) -> dict:
    spawner = subprocess.Popen([str(bindir / "spawn_idle"), str(idle)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        spawned = int(spawner.stdout.readline().split()[1])  # type: ignore[union-attr]
        res = run_window(Daemon(name, tmp / f"{name}-idle", max_stall=max_stall), window, lambda t: None)
        res["spawned"] = spawned
    finally:
        spawner.stdin.close()  # type: ignore[union-attr]
        spawner.wait(timeout=120)
    return res


# --- the benchmark ----------------------------------------------------------------

# numad only considers a process whose RSS is *more than* 300 MB (MEMORY_THRESHOLD, integer MiB):
# a 300 MiB workload sits exactly at it and is ignored, so each one holds a little more.
WORKLOAD_MIB = 320


def run(bindir: Path, out: Path, *, window: float, idle: int, mib: int = WORKLOAD_MIB, count: int = 4,
        daemons: tuple[str, ...] = ("numad", "numad-py", RAW_BOUND), cases: tuple[str, ...] = ("busy", "idle"),
        slowdown: float = 1.0) -> dict:
    """Both cases for both daemons; returns {"raw": ..., "rows": [side-by-side rows]}.

    numad-py's max_stall is its default times the VM's memcpy ``slowdown``
    (as rows 2 and 3 do): a page copy under TCG takes that much longer, so the
    unscaled bound cuts the same move into that many more calls than on real
    hardware.  ``RAW_BOUND`` runs the busy case at the unscaled default too."""
    scaled = DEFAULT_STALL * slowdown
    if not Path(NUMAD).exists():
        raise RuntimeError(f"{NUMAD} missing: bench/run.py installs Debian's numad on the host")
    tmp = out / "numad-side"
    khugepaged = KHUGEPAGED_SLEEP.read_text().strip() if KHUGEPAGED_SLEEP.exists() else None
    raw: dict = {"window": window, "mib": mib, "count": count, "idle": idle, "busy": {}, "idle_case": {},
                 "max_stall": {"numad-py": scaled, RAW_BOUND: DEFAULT_STALL, "slowdown": slowdown}}
    try:
        # numad first on the busy machine, numad-py first on the idle one.
        both = {"numad", "numad-py"} <= set(daemons)
        for name in [d for d in ("numad", "numad-py", RAW_BOUND) if d in daemons and "busy" in cases]:
            bound = DEFAULT_STALL if name == RAW_BOUND else scaled
            stall = "" if name == "numad" else f", max_stall {bound * 1e3:.0f} ms"
            log(f"busy: {name}, {count} x {mib} MiB + 2 placed (numactl, shim), {window:.0f} s{stall}")
            handover = None if name == RAW_BOUND or not both else \
                ("numad-py", min(HANDOVER_PY, window)) if name == "numad" else ("numad", window)
            raw["busy"][name] = r = busy_case(name, bindir, tmp, mib=mib, count=count, window=window,
                                              max_stall=bound, handover=handover)
            _restore(khugepaged)
            log(f"busy {name}: settled {r['settled']} all {r['all_settled_seconds']}, "
                f"{r['pages_migrated']} pages, {r['cpu_seconds']:.2f} s CPU, undid {r['undid_placement']}, "
                f"undid the shim's {r['undid_shim']}, "
                f"exited {_exited(r)}")
        for name in [d for d in ("numad-py", "numad") if d in daemons and "idle" in cases]:
            log(f"idle: {name}, {idle} idle processes, {window:.0f} s")
            raw["idle_case"][name] = r = idle_case(name, bindir, tmp, idle=idle, window=window, max_stall=scaled)
            _restore(khugepaged)
            log(f"idle {name}: {r['cpu_seconds']:.2f} s CPU, exited {_exited(r)}")
    finally:
        _restore(khugepaged)
    raw["khugepaged_scan_sleep_ms_before"] = khugepaged
    # A partial run has no side-by-side.
    complete = all({"numad", "numad-py"} <= set(raw[c]) for c in ("busy", "idle_case"))
    return {"raw": raw, "rows": table_rows(raw) if complete else []}


def _restore(value: str | None) -> None:
    """numad sets khugepaged's scan_sleep_millisecs at start (-H): put the old value back."""
    if value is not None and KHUGEPAGED_SLEEP.exists() and KHUGEPAGED_SLEEP.read_text().strip() != value:
        KHUGEPAGED_SLEEP.write_text(value)


def _exited(r: dict) -> str:
    if r.get("exited_at") is None:
        return "no"
    return f"at {r['exited_at']:.0f} s" + (f" ({r['crash']})" if r.get("crash") else "")


def _raw_bound_row(raw: dict, n: int, w: float) -> dict:
    """numad-py at the unscaled default bound against numad: CPU, and how many it placed."""
    b = raw["busy"]
    a, c = b["numad"]["cpu_seconds"], b[RAW_BOUND]["cpu_seconds"]
    placed = placed_count(b[RAW_BOUND])
    return {"id": "n3r", "figure": f"busy: daemon CPU s over {w:.0f} s, numad-py at the unscaled {DEFAULT_STALL * 1e3:.0f} ms bound "
            f"(placed {placed}/{n}, {b[RAW_BOUND]['pages_migrated']} pages)",
            "numad": round(a, 2), "numad_py": round(c, 2), "ratio": ratio(c, a), "goal": "-"}


def _placement_cpu(r: dict, part: int) -> float | None:
    """CPU s until the last workload settled (part 0), CPU s per minute after it (part 1)."""
    split = cpu_after_placement(r.get("cpu_series", ()), r["all_settled_seconds"], r.get("startup_cpu") or 0.0)
    return None if split is None else round(split[part], 2)


def placed_count(r: dict) -> int:
    return sum(1 for s in r["settled"].values() if s["seconds"] is not None)


def _cpu_when_placed(r: dict, k: int) -> float | None:
    """CPU s from the window's start until the k-th workload settled."""
    value = value_when_placed(r.get("cpu_series", ()), [s["seconds"] for s in r["settled"].values()], k,
                              r.get("startup_cpu") or 0.0)
    return None if value is None else round(value, 2)


def _pages_per_placed(r: dict) -> float | None:
    # Over the window, not up to the k-th placement: pgmigrate_success counts a migrate_pages
    # call's pages when the call returns, and numad moves a whole process in one call (seen:
    # a workload 98 % moved before the counter showed any of its pages).
    placed = placed_count(r)
    return round(r["pages_migrated"] / placed) if placed else None


def _handover_cells(b: dict, show: Callable[[dict], str]) -> dict:
    """numad's cell from its run on numad-py's end state (kept in numad-py's busy result)."""
    cell = {}
    for column, first in (("numad", "numad-py"), ("numad_py", "numad")):
        h = b[first].get("handover")
        cell[column] = show(h) if h else "-"
    return cell


def _ms_per_page(r: dict) -> float | None:
    return round(r["cpu_seconds"] * 1e3 / r["pages_migrated"], 3) if r["pages_migrated"] else None


def table_rows(raw: dict) -> list[dict]:
    b, i = raw["busy"], raw["idle_case"]
    n, w = raw["count"], raw["window"]

    def pair(fig: str, figure: str, get: Callable[[dict], object], cases: dict, goal: str = "-") -> dict:
        a, c = get(cases["numad"]), get(cases["numad-py"])
        rat = ratio(c, a) if isinstance(a, (int, float)) and isinstance(c, (int, float)) \
            and not isinstance(a, bool) else None
        return {"id": fig, "figure": figure, "numad": a, "numad_py": c, "ratio": rat, "goal": goal}

    def placed(r: dict) -> str:
        return f"{placed_count(r)}/{n}"

    # The same end state for both: as many workloads placed as the daemon that placed fewer.
    k = min(placed_count(b["numad"]), placed_count(b["numad-py"]))

    return [
        pair("n1", f"busy: s until all {n} workloads have >= 95% on one node", lambda r: r["all_settled_seconds"], b),
        pair("n1b", f"busy: workloads placed at the end (of {n})", placed, b),
        pair("n1c", "busy: s from launch to the daemon's first log line", lambda r: r["first_log"], b),
        {"id": "n0", "figure": "busy / idle: daemon exited before the end of the window", "goal": "no",
         "numad": f"{_exited(b['numad'])} / {_exited(i['numad'])}", "ratio": None,
         "numad_py": f"{_exited(b['numad-py'])} / {_exited(i['numad-py'])}"},
        pair("n2", f"busy: pages migrated (pgmigrate_success) in {w:.0f} s", lambda r: r["pages_migrated"], b,
             "<= 1.00"),
        pair("n3", f"busy: daemon CPU s over {w:.0f} s", lambda r: round(r["cpu_seconds"], 2), b, "<= 1.00"),
        pair("n2w", "busy: pages migrated per workload placed", _pages_per_placed, b, "<= 1.00"),
        pair("n3k", f"busy: daemon CPU s until {k} of {n} workloads were placed (as many as the other "
             "daemon placed)", lambda r: _cpu_when_placed(r, k), b, "<= 1.00"),
        pair("n3b", "busy: daemon CPU s, second half of the window", lambda r: round(r["cpu_second_half"], 2), b),
        # The end state's cost apart from what each daemon does once there (never: not reached).
        pair("n3e", f"busy: daemon CPU s until all {n} workloads were placed", lambda r: _placement_cpu(r, 0), b),
        pair("n3s", "busy: daemon CPU s per minute after that", lambda r: _placement_cpu(r, 1), b),
        # The daemons may not do the same work in the window (numad may place fewer): per page moved.
        pair("n3p", "busy: daemon CPU ms per page migrated", _ms_per_page, b),
        *([_raw_bound_row(raw, n, w)] if RAW_BOUND in b else []),
        pair("n4", "busy: undid the numactl-placed process (node or CPUs)", lambda r: r["undid_placement"], b, "no"),
        pair("n4s", f"busy: undid the shim-placed process (its pages left node {SHIM_NODE})",
             lambda r: r["undid_shim"], b, "no"),
        # Column = the daemon started second, on the other's end state.
        {"id": "n6", "figure": "handover: of the workloads the other daemon had placed, moved by this one",
         "goal": "0", "ratio": None, **_handover_cells(b, lambda h: f"{h['moved']} of {h['placed_before']}")},
        {"id": "n6p", "figure": "handover: pages this daemon migrated on the other's end state (window s)",
         "goal": "-", "ratio": None, **_handover_cells(b, lambda h: f"{h['pages_migrated']} ({h['window']:.0f})")},
        pair("n5", f"idle, {raw['idle']} idle processes: daemon CPU s over {w:.0f} s",
             lambda r: round(r["cpu_seconds"], 2), i, "<= 1.00"),
    ]
