#!/usr/bin/env python3
"""numad-py benchmarks: ratios against the kernel, numactl and bare fork, on a 2-node VM.

Boots ONE 2-node guest (virtme-ng, TCG), runs bench/guest_bench.py inside it
with the project's venv, brings back bench/results.json and prints one table:
figure, value, goal, met?.  Every figure is a ratio of two things measured
side by side in the same guest (interleaved repetitions, median), because
absolute times under TCG emulation mean little.

    python3 bench/run.py                          # everything (~30-40 min on 2 host cores)
    python3 bench/run.py --only migrate,scan      # a subset (merged into bench/results.json)
    python3 bench/run.py --quick                  # small sizes, few repetitions: a smoke test
    python3 bench/run.py --table bench/results.json   # print the table of an earlier run

Benchmarks: migrate, batch, stall, whole, numastat, fork, scan, placement, numad
(in the guest), cli (CLI start-up), control (the socket under load) and sysshim (the
system-wide shim's exec cost) on the host, and tiering, which boots a second guest
(6.12, `tiered` topology: DAMON) for bench/guest_tier.py; see bench/README.md.  Stdlib only.  Exit 0 when the run completed (goals
missed are reported, not failures); 1 when a benchmark or the VM failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
RESULTS = HERE / "results.json"
C_PROGRAMS = ("hold", "move_pages_bench", "memcpy_bw", "pointer_chase", "spawn_idle", "busy_hold")
BENCHES = ("migrate", "batch", "stall", "whole", "numastat", "fork", "scan", "placement", "numad", "cli", "control", "sysshim", "tiering")
HOST_BENCHES = ("cli", "control", "sysshim")      # measured on the host, before the guest boots
TIER_BENCHES = ("tiering",)  # needs DAMON: the 6.12 `tiered` guest
GUEST_BENCHES = tuple(b for b in BENCHES if b not in HOST_BENCHES + TIER_BENCHES)
NUMAD = "/usr/bin/numad"
DEFAULT_KERNEL = "/var/cache/numad-py-vm/kernel/root/boot/vmlinuz-6.1.0-56-amd64"
sys.path.insert(0, str(REPO / "tests" / "vm"))
sys.path.insert(0, str(HERE))
from guest_runner import Tail, last_lines, run_guest  # noqa: E402  (the shared guest runner)
from numad_compare import side_by_side  # noqa: E402
from spread import format_spread  # noqa: E402

VM_ARGS = ["--cpus", "4", "-m", "4G", "--numa", "2G,cpus=0-1", "--numa", "2G,cpus=2-3"]


def vm_env() -> tuple[str, str]:
    """Kernel and vng: environment, else tests/vm/setup.sh --print-env (installs what is missing)."""
    kernel, vng = os.environ.get("NUMAD_VM_KERNEL"), os.environ.get("NUMAD_VM_VNG")
    setup = REPO / "tests" / "vm" / "setup.sh"
    if not (kernel and vng) and setup.exists():
        p = subprocess.run(["bash", str(setup), "--print-env"], stdout=subprocess.PIPE, text=True)
        if p.returncode == 0:
            env = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
            kernel = kernel or env.get("NUMAD_VM_KERNEL")
            vng = vng or env.get("NUMAD_VM_VNG")
    kernel = kernel or DEFAULT_KERNEL
    vng = vng or shutil.which("vng") or ""
    if not Path(kernel).exists() or not vng:
        raise SystemExit(f"bench: no VM kernel ({kernel}) or vng; run `bash tests/vm/setup.sh` first")
    return kernel, vng


def compile_programs(dest: Path) -> None:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        raise SystemExit("bench: needs gcc")
    dest.mkdir(parents=True, exist_ok=True)
    for name in C_PROGRAMS:
        # Static: no shared library pages, so a process's pages are all its own.
        subprocess.run([gcc, "-O2", "-Wall", "-static", "-o", str(dest / name), str(HERE / "c" / f"{name}.c")],
                       check=True)


def host_memcpy(bindir: Path) -> float:
    vals = []
    for _ in range(5):
        out = subprocess.run([str(bindir / "memcpy_bw"), "64", "7"], capture_output=True, text=True, check=True)
        vals.append(json.loads(out.stdout)["gb_per_s"])
    return statistics.median(vals)


def venv_python() -> Path:
    py = Path(os.environ.get("NUMAD_VM_PYTHON") or REPO / ".venv" / "bin" / "python")
    if not py.exists():
        raise SystemExit(f"bench: no venv at {py}: run `make venv` first")
    return py


def guest_script(rundir: Path, bindir: Path, python: Path, guest_args: list[str]) -> str:
    q = shlex.quote
    cmd = [str(python), str(HERE / "guest_bench.py"), "--bin", str(bindir), "--out", str(rundir), *guest_args]
    return "\n".join([
        "#!/bin/bash",
        f"cd {q(str(REPO))}",
        "export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 NUMAD_VM_TOPOLOGY=bench2",
        f"echo \"guest: $(uname -r), nodes $(cat /sys/devices/system/node/online), $(nproc) cpus\" >{q(str(rundir / 'guest.log'))}",
        f"{' '.join(q(c) for c in cmd)} >>{q(str(rundir / 'guest.log'))} 2>&1",
        f"echo $? >{q(str(rundir / 'guest.rc'))}",
        "",
    ])


def tiered_guest(rundir: Path, vng: str, python: Path, quick: bool, timeout: float) -> dict:
    """Benchmark `tiering` in the 6.12 `tiered` guest; its guest.json, or one with the error."""
    from topologies import TOPOLOGIES, vng_args
    kernel = os.environ.get("NUMAD_VM_KERNEL_6_12", "")
    if not kernel:
        p = subprocess.run(["bash", str(REPO / "tests" / "vm" / "setup.sh"), "--print-env", "--kernel", "6.12"],
                           stdout=subprocess.PIPE, text=True)
        kernel = dict(x.split("=", 1) for x in p.stdout.splitlines() if "=" in x).get("NUMAD_VM_KERNEL_6_12", "")
    failed = {"meta": {}, "rows": [], "raw": {}, "errors": {}}
    if not kernel:
        failed["errors"]["tiering"] = "no 6.12 kernel (tests/vm/setup.sh --kernel 6.12)"
        return failed
    tdir = rundir / "tiered"
    tdir.mkdir()
    extra = ["--mib", "128", "--cold-after", "10", "--settle", "20", "--window", "30"] if quick else []
    cmd = [str(python), str(HERE / "guest_tier.py"), "--out", str(tdir), *extra]
    q = shlex.quote
    (tdir / "guest.sh").write_text(f"#!/bin/bash\ncd {q(str(REPO))}\nexport PYTHONDONTWRITEBYTECODE=1\n"
                                   f"{' '.join(q(c) for c in cmd)} >{q(str(tdir / 'guest.log'))} 2>&1\n")
    vm = [vng, "-v", "-r", kernel, "--disable-kvm", *vng_args(TOPOLOGIES["tiered"]), "--rwdir", str(tdir),
          "--exec", f"bash {tdir / 'guest.sh'}"]
    print(f"bench: booting the 6.12 tiered guest for `tiering`; results in {tdir}", flush=True)
    run_guest(vm, tdir / "console.log", [Tail(tdir / "guest.log", "[tiered] ")], timeout, REPO)
    if not (tdir / "guest.json").exists():
        failed["errors"]["tiering"] = f"no results from the tiered guest (see {tdir})"
        return failed
    return json.loads((tdir / "guest.json").read_text())


def boot(rundir: Path, kernel: str, vng: str, timeout: float) -> bool:
    console = rundir / "console.log"
    cmd = [vng, "-v", "-r", kernel, "--disable-kvm", *VM_ARGS, "--rwdir", str(rundir),
           "--exec", f"bash {rundir / 'guest.sh'}"]
    print(f"bench: booting 2-node guest ({' '.join(VM_ARGS)}); results in {rundir}", flush=True)
    guest_log = Tail(rundir / "guest.log", "[guest] ")
    timed_out, seconds = run_guest(cmd, console, [guest_log], timeout, REPO)
    if timed_out:
        print(f"bench: timed out after {timeout:.0f}s", flush=True)
    print(f"bench: guest finished in {seconds:.0f}s", flush=True)
    if not guest_log.seen:
        print("bench: the guest never started (last console lines):", flush=True)
        for line in last_lines(console, 30):
            print("   " + line, flush=True)
        return False
    return True


# Rows written before rows carried their benchmark's name.
_BENCH_OF_ID = {"1": "migrate", "1b": "migrate", "1c": "migrate", "i2": "migrate", "2": "batch", "2b": "batch", "3": "stall",
                "3b": "stall", "4": "whole", "4b": "whole", "i2a": "numastat", "i2b": "numastat", "5": "fork",
                "5a": "fork", "5b": "fork", "6": "scan", "6b": "scan", "6c": "scan", "7": "placement",
                "7b": "placement", "n1": "numad", "n0": "numad", "n1b": "numad", "n1c": "numad", "n2": "numad", "n3": "numad",
                "n3b": "numad", "n4": "numad", "n5": "numad"}


def merge(new: dict, old: dict) -> dict:
    """Keep the previous run's rows and raw data for the benchmarks this run did not do."""
    ran = set(new.get("raw", {}).get("seconds", {}))
    kept = [r for r in old.get("rows", []) if r.get("bench", _BENCH_OF_ID.get(r["id"])) not in ran]
    for r in kept:
        r.setdefault("bench", _BENCH_OF_ID.get(r["id"], "?"))
        r["from_run"] = r.get("from_run") or old.get("meta", {}).get("date", "?")
    order = {b: i for i, b in enumerate(BENCHES)}
    new["rows"] = sorted(new["rows"] + kept, key=lambda r: order.get(r.get("bench"), 99))
    for key, value in old.get("raw", {}).items():
        if key not in ran and key not in ("seconds", "memcpy"):
            new["raw"].setdefault(key, value)
    new["meta"]["merged_from"] = {b: old.get("meta", {}).get("date") for b in
                                  {r["bench"] for r in kept}}
    return new


def met_text(r: dict) -> str:
    """yes / NO, or "spread" when the median meets the goal and the spread's far end does not."""
    if r.get("verdict"):
        return r["verdict"]
    return "-" if r["met"] is None else ("yes" if r["met"] else "NO")


def run_host_benches(wanted: list[str], reps: int | None) -> dict:
    """The host-side benchmarks (CLI start-up, control socket under load): rows and raw data in the results' shape."""
    out: dict = {"rows": [], "raw": {"seconds": {}}}
    import cli_startup  # bench/ is on sys.path
    import control_load
    measures = {"cli": lambda: cli_startup.measure(reps or 11),
                "control": lambda: control_load.measure(reps or 3),
                "sysshim": lambda: system_shim_bench(reps)}
    for name in (n for n in HOST_BENCHES if n in wanted):
        t0 = time.monotonic()
        res = measures[name]()
        out["rows"] += res.pop("rows")
        out["raw"][name] = res
        out["raw"]["seconds"][name] = round(time.monotonic() - t0, 1)
    for r in out["rows"]:
        print(f"bench: {r['id']} {r['figure']}: {r['value']} ({r['note']})", flush=True)
    return out


def system_shim_bench(reps: int | None) -> dict:
    """bench/bench_system_shim.py under the venv (it publishes rules with numad_py's code), then
    bench/bench_fork.py on the host: the children of a matched root (rows s2, s2a)."""
    out_json = REPO / "bench" / "out" / "sysshim.json"
    cmd = [str(venv_python()), str(HERE / "bench_system_shim.py"), "--json", str(out_json)]
    subprocess.run(cmd + (["--reps", str(reps)] if reps else []), check=True, cwd=REPO)
    res = json.loads(out_json.read_text())
    fork_json = REPO / "bench" / "out" / "fork-host.json"
    cmd = [str(venv_python()), str(HERE / "bench_fork.py"), "--json", str(fork_json)]
    subprocess.run(cmd + (["--reps", str(reps)] if reps else []), check=True, cwd=REPO)
    res["fork_host"] = json.loads(fork_json.read_text())
    from spread import spread
    base = res["samples_seconds"]["base"]
    g, e, t, bare = (spread([a / b for a, b in zip(res["samples_seconds"][k], base)])
                     for k in ("gate", "empty", "text", "bare"))
    v = "yes" if g["max"] <= 1.02 else ("spread" if g["median"] <= 1.02 else "NO")
    res["rows"] = [{"bench": "sysshim", "id": "s1",
                    "figure": "system-wide shim (host): exec /bin/true unmatched, with / without",
                    "value": round(g["median"], 3), "goal": "<= 1.02", "spread": g, "met": v == "yes",
                    "verdict": v, "note": f"loaded with LD_PRELOAD (the host's /etc/ld.so.preload is not "
                    f"edited); a bare preloaded library (nothing in it) alone {bare['median']:.3f}, an empty "
                    f"one linked as the shim is {e['median']:.3f}, the shim without "
                    f"its gate (reading the rules text) {t['median']:.3f}"}]
    ms = res["fork_host"]["median_seconds"]
    for fig, kind, label, goal in (("s2", "exec", "fork+exec+wait of /bin/true", 1.03),
                                   ("s2a", "fork", "fork+exit+wait", 1.10)):
        sp = res["fork_host"]["spread"][kind]
        v = "yes" if sp["max"] <= goal else ("spread" if sp["median"] <= goal else "NO")
        res["rows"].append({
            "bench": "sysshim", "id": fig, "figure": f"shim (host): {label} from a matched root, with / without",
            "value": round(sp["median"], 3), "goal": f"<= {goal:.2f}", "spread": sp, "met": v == "yes",
            "verdict": v, "note": f"bench/bench_fork.py, interleaved fork by fork: {ms[kind + '_base'] * 1e6:.0f} "
            f"-> {ms[kind + '_shim'] * 1e6:.0f} us"})
    return res


def table(results: dict) -> str:
    rows = results.get("rows", [])
    head = ("#", "figure", "value", "spread (min-max)", "goal", "met?")
    cells = [(r["id"], r["figure"] + (f" [run {r['from_run']}]" if r.get("from_run") else ""), str(r["value"]),
              format_spread(r.get("spread")), r["goal"], met_text(r)) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{'<' if i in (0, 1) else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*head), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*c) for c in cells]
    notes = [f"  {r['id']}: {r['note']}" for r in rows if r.get("note")]
    meta = results.get("meta", {})
    lines.insert(0, f"numad-py bench, {meta.get('date', '?')} on {meta.get('host', '?')}; "
                    f"guest {meta.get('kernel', '?')}, nodes {meta.get('nodes')}, {meta.get('cpus')} vCPUs (TCG), "
                    f"VM memcpy slowdown x{meta.get('memcpy_slowdown') or 0:.1f}")
    return "\n".join(lines + ["", "notes:"] + notes)


def full_table(results: dict) -> str:
    """The figures table, then the numad side-by-side when the run has one."""
    text = table(results)
    side = results.get("raw", {}).get("numad", {})
    if side.get("rows"):
        text += (f"\n\nside by side with numad (issue 15), one daemon at a time, {side['window']:.0f} s each; "
                 f"ratio = numad-py / numad\n" + side_by_side(side["rows"]))
    return text


def ensure_numad() -> None:
    """Debian's numad on the host (the guest sees the host's filesystem); never started here."""
    if Path(NUMAD).exists():
        return
    print("bench: installing Debian's numad (apt-get install numad) for the side-by-side", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "numad"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0 or not Path(NUMAD).exists():
        raise SystemExit("bench: could not install numad: " + p.stdout.strip()[-500:])
    # The package enables (and on a systemd host starts) numad.service: this host must not run it.
    if shutil.which("systemctl"):
        subprocess.run(["systemctl", "disable", "--now", "numad"], capture_output=True)
    if Path("/var/run/numad.pid").exists():  # started anyway (SysV init): numad's own way to stop it
        subprocess.run([NUMAD, "-i", "0"], capture_output=True, timeout=30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    ap.add_argument("--reps", type=int, help="repetitions per ratio (default 5)")
    ap.add_argument("--quick", action="store_true", help="small sizes, 3 repetitions: a smoke test, not a result")
    ap.add_argument("--timeout", type=float, default=5400, help="seconds for the whole guest run")
    ap.add_argument("--numad-daemons", help="numad benchmark: only these daemons (numad,numad-py,numad-py-unscaled); no side-by-side without the first two")
    ap.add_argument("--numad-cases", help="numad benchmark: only these cases (busy,idle); no side-by-side")
    ap.add_argument("--table", type=Path, help="only print the table of this results.json")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where to write the results JSON")
    args = ap.parse_args(argv)
    if args.table:
        print(full_table(json.loads(args.table.read_text())))
        return 0

    guest_args: list[str] = []
    wanted = args.only.split(",") if args.only else list(BENCHES)
    bad = set(wanted) - set(BENCHES)
    if bad:
        ap.error(f"unknown benchmarks {sorted(bad)}; known: {', '.join(BENCHES)}")
    in_guest = [b for b in wanted if b in GUEST_BENCHES]
    if args.only:
        guest_args += ["--only", ",".join(in_guest)]
    if args.quick:
        guest_args += ["--reps", "3", "--mib", "64", "--stall-mib", "256", "--idle", "200", "--daemon-seconds", "20",
                       "--forks", "100", "--fork-reps", "3", "--chase-mib", "64", "--chase-steps", "300000",
                       "--placement-reps", "1", "--numad-seconds", "60"]
    for flag in ("numad_daemons", "numad_cases"):
        if getattr(args, flag):
            guest_args += ["--" + flag.replace("_", "-"), getattr(args, flag)]
    if args.reps:
        guest_args += ["--reps", str(args.reps), "--fork-reps", str(args.reps)]

    host = run_host_benches(wanted, args.reps)
    if not in_guest and "tiering" not in wanted:
        res = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M"), "host": platform.node(),
                        "loadavg": os.getloadavg()}, "rows": host["rows"], "raw": host["raw"]}
        if args.results.exists():
            res = merge(res, json.loads(args.results.read_text()))
        args.results.write_text(json.dumps(res, indent=2) + "\n")
        print("\n" + full_table(res) + f"\n\nbench: wrote {args.results}")
        return 0
    if "numad" in in_guest:
        ensure_numad()
    kernel, vng = vm_env()
    python = venv_python()
    # The guest runs with PYTHONDONTWRITEBYTECODE (nothing written over 9p): without byte-code
    # made here, every numad-py start in it compiles the sources again (seconds under TCG).
    subprocess.run([str(python), "-m", "compileall", "-q", str(REPO / "numad_py")], check=True)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in sorted(OUT.glob("run-*"))[:-5]:
        shutil.rmtree(old, ignore_errors=True)
    rundir = OUT / time.strftime(f"run-%Y%m%d-%H%M%S-{os.getpid()}")
    bindir = rundir / "bin"
    compile_programs(bindir)
    host_bw = host_memcpy(bindir)
    print(f"bench: host memcpy {host_bw:.2f} GB/s", flush=True)
    (rundir / "guest.sh").write_text(guest_script(rundir, bindir, python,
                                                  guest_args + ["--host-memcpy", f"{host_bw:.4f}"]))
    t0 = time.monotonic()
    res: dict = {"meta": {}, "rows": [], "raw": {"seconds": {}}, "errors": {}}
    guest_rc: int | None = 0
    if in_guest:
        booted = boot(rundir, kernel, vng, args.timeout)
        guest_json = rundir / "guest.json"
        if not booted or not guest_json.exists():
            print(f"bench: no results from the guest (see {rundir})", flush=True)
            return 1
        res = json.loads(guest_json.read_text())
        rc_file = rundir / "guest.rc"
        guest_rc = int(rc_file.read_text().strip()) if rc_file.exists() else None
    if "tiering" in wanted:
        tier = tiered_guest(rundir, vng, python, args.quick, args.timeout)
        res["rows"] += tier["rows"]
        res["raw"].update({k: v for k, v in tier["raw"].items() if k != "seconds"})
        res["raw"].setdefault("seconds", {})["tiering"] = round(time.monotonic() - t0)
        res["errors"] = {**res.get("errors", {}), **tier["errors"]}
        res["meta"]["tiered_guest"] = tier["meta"]
    host_after = host_memcpy(bindir)
    raw_memcpy = res.get("raw", {}).get("memcpy", {})
    res["meta"].update({
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "host": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores, {platform.release()})",
        "host_memcpy_gb_per_s": {"before": host_bw, "after": host_after},
        "memcpy_slowdown": raw_memcpy.get("slowdown"),
        "wall_seconds": round(time.monotonic() - t0),
        "quick": args.quick, "guest_rc": guest_rc, "rundir": str(rundir),
    })
    res["rows"] = host["rows"] + res["rows"]
    res.setdefault("raw", {}).setdefault("seconds", {}).update(host["raw"].pop("seconds"))
    res["raw"].update(host["raw"])
    res["meta"]["host_loadavg_after"] = os.getloadavg()
    if args.only and args.results.exists():
        res = merge(res, json.loads(args.results.read_text()))
    args.results.write_text(json.dumps(res, indent=2) + "\n")
    print()
    print(full_table(res))
    print(f"\nbench: wrote {args.results}")
    return 0 if guest_rc == 0 and not res.get("errors") else 1


if __name__ == "__main__":
    sys.exit(main())
