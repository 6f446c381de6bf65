"""The benchmarks that run inside the multi-node guest (started by bench/run.py).

Every figure is a ratio of two things measured side by side in this run,
interleaved (A B B A ...) over several repetitions, median reported: under
TCG emulation absolute times mean little, ratios do.

    python bench/guest_bench.py --bin DIR --out DIR [--host-memcpy GBPS] [--only a,b] [--reps N]

Writes OUT/guest.json: {"meta", "rows" (the table), "raw" (everything measured)}.
Benchmarks: migrate, batch, stall, whole, numastat, fork, scan, placement, numad (guest_numad.py).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from numad_py import numa  # noqa: E402
from numad_py.numa import prescan  # noqa: E402
from numad_py.stall import DEFAULT_MAX_STALL as DEFAULT_STALL  # noqa: E402
from numad_py.stall import StallPolicy  # noqa: E402
from numad_py.config import load_config  # noqa: E402
from numad_py.sense.processes import Sensor  # noqa: E402
from numad_py.topology import online_nodes, read_node_memory  # noqa: E402
from spread import spread, verdict  # noqa: E402

PAGE = numa.PAGE_SIZE
PY = sys.executable
NUMAD = str(Path(PY).parent / "numad-py")
ALL = ("migrate", "batch", "stall", "whole", "numastat", "fork", "scan", "placement", "numad")

BIN: Path
OUT: Path
ARGS: argparse.Namespace
RAW: dict = {}
ROWS: list = []
CURRENT = ""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def row(fig: str, name: str, value, goal: str | None, met: bool | None, note: str = "",
        ratios: list[float] | None = None) -> None:
    """One table row.  With the paired ``ratios``, the value is their median and the goal is
    met only when the median and the far end of their spread both meet it (bench/spread.py)."""
    r = {"bench": CURRENT, "id": fig, "figure": name, "value": value, "goal": goal or "-",
         "met": None if met is None else bool(met), "note": note}
    if ratios:
        s = spread(ratios)
        v = verdict(goal, s)
        r.update(value=round(s["median"], 3), spread=s, verdict=v, met=None if v is None else v == "yes")
    ROWS.append(r)


# --- processes --------------------------------------------------------------

class Proc:
    """A C helper that prints JSON lines and obeys stdin."""

    def __init__(self, argv: list[str]):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self.read()

    def read(self) -> dict:
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.p.args[0]} exited ({self.p.wait()}) before answering")
        return json.loads(line)

    def send(self, text: str) -> None:
        self.p.stdin.write(text + "\n")
        self.p.stdin.flush()

    def close(self) -> None:
        try:
            self.send("exit")
            self.p.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def hold(mib: int, node: int, kind: str = "4k") -> Proc:
    return Proc([str(BIN / "hold"), str(mib), str(node), kind])


def on_node(h: Proc, node: int) -> float:
    res = numa.range_residency(h.info["pid"], h.info["start"], h.info["end"])
    return res["nodes"].get(node, 0) / (h.info["end"] - h.info["start"])


def c_move(h: Proc, node: int, batch: int, mode: str = "move") -> dict:
    out = subprocess.run([str(BIN / "move_pages_bench"), str(h.info["pid"]), str(h.info["start"]),
                          str(h.info["end"]), str(node), str(batch), mode],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def py_move(h: Proc, node: int, **kw) -> tuple[float, numa.MigrationResult]:
    t0 = time.perf_counter()
    r = numa.migrate_range(h.info["pid"], h.info["start"], h.info["end"], {node}, **kw)
    return time.perf_counter() - t0, r


def memcpy_gbps() -> float:
    vals = []
    for _ in range(5):
        out = subprocess.run([str(BIN / "memcpy_bw"), "64", "7"], capture_output=True, text=True, check=True)
        vals.append(json.loads(out.stdout)["gb_per_s"])
    return med(vals)


def slowdown() -> float:
    if "memcpy" not in RAW:
        guest = memcpy_gbps()
        host = ARGS.host_memcpy
        RAW["memcpy"] = {"guest_gb_per_s": guest, "host_gb_per_s": host,
                         "slowdown": (host / guest) if host else None}
        log(f"memcpy: guest {guest:.3f} GB/s, host {host or float('nan'):.3f} GB/s")
    return RAW["memcpy"]["slowdown"] or 1.0


# --- 1. range migration: numad-py vs C, 4K and THP ----------------------------

def bench_migrate() -> None:
    mib, batch = ARGS.mib, numa.DEFAULT_BATCH
    out = {}
    for kind in ("4k", "thp"):
        s = {"py": [], "py_fixed": [], "py_scaled": [], "c_move": [], "c_qmq": [], "py_moved_ok": [],
             "huge_pages": [], "pages_queried": []}
        scaled_stall = DEFAULT_STALL * slowdown()
        with hold(mib, 0, kind) as h:
            pages = (h.info["end"] - h.info["start"]) // PAGE
            where = 0
            for rep in range(ARGS.reps):
                # A B C C B A over the two directions: each tool moves 0->1 and 1->0 equally often.
                order = ["py", "py_fixed", "py_scaled", "c_move", "c_qmq"]
                for tool in (order + order[::-1]) if rep % 2 == 0 else (order[::-1] + order):
                    dst = 1 - where
                    if tool.startswith("py"):
                        # py: the default (stall-bounded batches); py_fixed: C's batch, no bound;
                        # py_scaled: the default bound x the VM's memcpy slowdown (as rows 2 and 3),
                        # so that the bound cuts batches where it would on hardware.
                        stall = {"py": {}, "py_fixed": {"max_stall": None},
                                 "py_scaled": {"max_stall": scaled_stall}}[tool]
                        dt, r = py_move(h, dst, batch_pages=batch, **stall)
                        s["py_moved_ok"].append(r.moved + r.already == pages)
                        s["huge_pages"].append(prescan.huge_pages_in(h.info["pid"], [(h.info["start"], h.info["end"])]))
                        s["pages_queried"].append(r.pages_queried)
                    else:
                        c = c_move(h, dst, batch, tool[2:])
                        dt = c["seconds"]
                    s[tool].append(dt)
                    where = dst
            s["final_on_node"] = on_node(h, where)
            s["fixed_costs"] = fixed_costs(h)
            s["checksum_ok"] = (h.send("sum") or h.read())["bad_pages"] == 0
        s["pages"] = pages
        # Throughput ratio numad-py / C = C time / numad-py time, paired per block of repetitions
        # (median move of each tool in the block): under TCG single moves of the same memory
        # differ by 2-4x whichever tool runs, and single pairs made every spread that wide.
        size = 2 * max(1, min(ARGS.migrate_block, ARGS.reps))     # moves per tool per block
        s["block_moves"] = size
        s["single_move_ratios"] = {k: med([c / p for c, p in zip(s["c_move"], s[k])])
                                   for k in ("py", "py_fixed", "py_scaled")}
        pairs = block_ratios(s["c_move"], s["py"], size)
        s["ratio_throughput_vs_c_move"] = med(pairs)
        s["ratio_throughput_vs_c_qmq"] = med(block_ratios(s["c_qmq"], s["py"], size))
        s["us_per_page"] = {k: med(s[k]) / pages * 1e6 for k in ("py", "py_fixed", "py_scaled", "c_move", "c_qmq")}
        out[kind] = s
        log(f"migrate {kind}: py {s['us_per_page']['py']:.2f} us/page, C move {s['us_per_page']['c_move']:.2f}, "
            f"C qmq {s['us_per_page']['c_qmq']:.2f}; ratio {s['ratio_throughput_vs_c_move']:.3f}")
        s["ratio_of_minimums"] = min(s["c_move"]) / min(s["py"])
        fixed = sum(s["fixed_costs"].values())
        s["ratio_vs_c_move_without_fixed"] = med([c / max(p - fixed, 1e-9) for c, p in zip(s["c_move"], s["py"])])
        log(f"  fixed costs per migrate_range call: {s['fixed_costs']}")
        label = "4K" if kind == "4k" else "THP"
        r = s["ratio_throughput_vs_c_move"]
        row("1", f"range migration {mib} MiB {label}: numad-py / C move_pages throughput", round(r, 3),
            ">= 0.95", r >= 0.95, ratios=pairs, note=
            f"{s['us_per_page']['py']:.2f} vs {s['us_per_page']['c_move']:.2f} us/page; "
            f"{s['pages_queried'][-1]} of {pages} pages queried before their move; "
            f"{s['ratio_vs_c_move_without_fixed']:.3f} without the per-call fixed costs ({fixed * 1e3:.0f} ms); "
            f"ratio of the fastest runs {s['ratio_of_minimums']:.3f}")
        fixed_pairs = block_ratios(s["c_move"], s["py_fixed"], size)
        row("1c", f"  {label}: numad-py at C's batch ({batch} pages, no stall bound) / C move_pages",
            round(med(fixed_pairs), 3), ">= 0.95", med(fixed_pairs) >= 0.95, ratios=fixed_pairs,
            note=f"{s['us_per_page']['py_fixed']:.2f} vs {s['us_per_page']['c_move']:.2f} us/page: the query, "
                 "Python and per-call costs alone (row 1 also pays the stall bound's smaller batches)")
        scaled_pairs = block_ratios(s["c_move"], s["py_scaled"], size)
        row("1s", f"  {label}: numad-py at the bound scaled to the VM ({scaled_stall * 1e3:.0f} ms) / C move_pages",
            round(med(scaled_pairs), 3), ">= 0.95", med(scaled_pairs) >= 0.95, ratios=scaled_pairs,
            note=f"{s['us_per_page']['py_scaled']:.2f} vs {s['us_per_page']['c_move']:.2f} us/page: {DEFAULT_STALL * 1e3:.0f} ms x "
                 f"{slowdown():.1f} (VM memcpy slowdown), the batches the default bound allows on hardware")
        r2 = s["ratio_throughput_vs_c_qmq"]
        row("1b", f"  {label}: numad-py / C doing the same query+move+query", round(r2, 3), None, None,
            ratios=block_ratios(s["c_qmq"], s["py"], size), note=f"C qmq {s['us_per_page']['c_qmq']:.2f} us/page (Python overhead alone)")
    RAW["migrate"] = out
    u = out["4k"]["us_per_page"]
    row("i2", "issue 2: per-page move_pages cost, Python / C (4K)", round(u["py"] / u["c_move"], 3), None, None,
        f"Python {u['py']:.2f} us, C {u['c_move']:.2f} us per page in this VM")


def block_ratios(c_times: list[float], py_times: list[float], size: int) -> list[float]:
    """C median ÷ numad-py median over each full block of ``size`` consecutive moves."""
    n = min(len(c_times), len(py_times)) // size * size
    return [med(c_times[i:i + size]) / med(py_times[i:i + size]) for i in range(0, n, size)]


def fixed_costs(h: Proc) -> dict:
    """Per-call costs of migrate_range besides the chunks (median seconds of 5)."""
    pid = h.info["pid"]
    pages = (h.info["end"] - h.info["start"]) // PAGE
    from numad_py.numa import migrate
    parts = {
        "node check (sysfs has_memory)": lambda: migrate._check_targets({0, 1}),
        "numa_maps prescan (maps + numa_maps)": lambda: prescan.read_prescan(pid, [1], pages),
        "scratch arrays (per thread)": lambda: migrate._scratch(min(numa.MAX_BATCH, pages)),
    }
    out = {}
    for name, fn in parts.items():
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        out[name] = med(ts)
    return out


# --- 2. batch size curve ---------------------------------------------------------

def chosen_batch(h: Proc, where: int, bound: float) -> tuple[int, list, int]:
    stall = StallPolicy(bound)
    seq = []

    def nb(pages, seconds):
        seq.append((pages, round(seconds, 6)))
        return stall.next_batch(pages, seconds)

    py_move(h, 1 - where, batch_pages=stall.batch, next_batch=nb)
    later = [p for p, _ in seq[len(seq) // 2:]] or [stall.batch]
    return int(med(later)), seq, 1 - where


def bench_batch() -> None:
    mib = ARGS.mib
    scale = slowdown()
    bounds = {"scaled": DEFAULT_STALL * scale, "raw": DEFAULT_STALL}
    out = {"bounds": bounds}
    with hold(mib, 0) as h:
        pages = (h.info["end"] - h.info["start"]) // PAGE
        where = 0
        chosen = {}
        for name, bound in bounds.items():
            b, seq, where = chosen_batch(h, where, bound)
            chosen[name] = b
            out[f"calibration_{name}"] = seq
        out["chosen"] = chosen
        configs = {"scaled": chosen["scaled"], "raw": chosen["raw"], "max": numa.MAX_BATCH}
        times = {k: [] for k in configs}
        for rep in range(ARGS.reps):
            order = list(configs)
            for name in (order + order[::-1]) if rep % 2 == 0 else (order[::-1] + order):
                dt, _ = py_move(h, 1 - where, batch_pages=configs[name])
                where = 1 - where
                times[name].append(dt)
    out["seconds"] = times
    out["us_per_page"] = {k: med(v) / pages * 1e6 for k, v in times.items()}
    out["ratio"] = {k: med([a / b for a, b in zip(times[k], times["max"])]) for k in ("scaled", "raw")}
    out["ratio_of_minimums"] = {k: min(times[k]) / min(times["max"]) for k in ("scaled", "raw")}
    RAW["batch"] = out
    log(f"batch: chosen {chosen}, us/page {out['us_per_page']}, ratios {out['ratio']}")
    pair = {k: [a / b for a, b in zip(times[k], times["max"])] for k in ("scaled", "raw")}
    r = out["ratio"]["scaled"]
    row("2", f"per-page cost at the daemon's batch ({chosen['scaled']} pages) / at 65536", round(r, 3),
        "<= 1.10", r <= 1.10, ratios=pair["scaled"], note=f"bound {DEFAULT_STALL * 1e3:.0f} ms x {scale:.1f} (VM memcpy slowdown) = {bounds['scaled'] * 1e3:.0f} ms; "
        f"ratio of the fastest runs {out['ratio_of_minimums']['scaled']:.3f}")
    r = out["ratio"]["raw"]
    row("2b", f"  same, batch chosen under the raw {DEFAULT_STALL * 1e3:.0f} ms bound in the VM ({chosen['raw']} pages)", round(r, 3),
        "<= 1.10", r <= 1.10, ratios=pair["raw"], note=f"what the daemon would pick on this slow VM; ratio of the fastest runs "
        f"{out['ratio_of_minimums']['raw']:.3f}")


# --- 3. longest syscall under the stall bound --------------------------------------

def bench_stall() -> None:
    scale = slowdown()
    out = {"slowdown": scale}
    for name, bound in (("default", DEFAULT_STALL), ("scaled", DEFAULT_STALL * scale)):
        with hold(ARGS.stall_mib, 0) as h:
            stall = StallPolicy(bound)
            calls = []

            def nb(pages, seconds, stall=stall, calls=calls):
                calls.append((pages, seconds))
                return stall.next_batch(pages, seconds)

            dt, r = py_move(h, 1, batch_pages=stall.batch, next_batch=nb)
            longest = r.longest_call_seconds
            out[name] = {
                "bound": bound, "seconds": dt, "longest": longest, "calls": len(calls),
                "longest_after_first": max((s for _, s in calls[1:]), default=0.0),
                "first_call": calls[0] if calls else None,
                "over_bound": sum(1 for _, s in calls if s > bound),
                "batches": [p for p, _ in calls][:40], "moved": r.moved,
                "calls_pages_seconds": [(p, round(t, 6)) for p, t in calls],
                "longest_small_call": max((t for p, t in calls if p <= 128), default=0.0),
            }
        log(f"stall {name}: {out[name]}")
    RAW["stall"] = out
    d, s = out["default"], out["scaled"]
    scaled_bound = DEFAULT_STALL * scale
    row("3", f"longest move_pages call migrating {ARGS.stall_mib} MiB, default {DEFAULT_STALL * 1e3:.0f} ms bound (ms)",
        round(d["longest"] * 1e3, 1), f"<= {scaled_bound * 1e3:.0f} ({DEFAULT_STALL * 1e3:.0f} x {scale:.1f})",
        d["longest"] <= scaled_bound,
        f"{d['calls']} calls, {d['over_bound']} over {DEFAULT_STALL * 1e3:.0f} ms; first call {d['first_call'][1] * 1e3:.1f} ms; "
        f"longest call of <= 128 pages {d['longest_small_call'] * 1e3:.1f} ms")
    row("3b", "  same with the bound scaled to the VM (ms)", round(s["longest"] * 1e3, 1),
        f"<= {scaled_bound * 1e3:.0f}", s["longest"] <= scaled_bound,
        f"{s['calls']} calls, {s['over_bound']} over the bound; "
        f"longest after the first call {s['longest_after_first'] * 1e3:.1f} ms")


# --- 4. whole-process move: numad-py migrate vs migratepages ------------------------

def bench_whole() -> None:
    mib = ARGS.mib
    out = {"numad": [], "migratepages": [], "numad_inprocess": [], "numad_noop": [], "python_startup": [],
           "python_import_migrate_only": [], "python_import_cli": [],
           "on_target": {"numad": [], "migratepages": []}}
    mp = shutil.which("migratepages")
    with hold(mib, 0) as h:
        pid = h.info["pid"]
        where = 0
        for rep in range(min(ARGS.reps, 3)):  # each CLI start costs seconds under TCG + 9p
            order = ["numad", "migratepages"]
            for tool in (order + order[::-1]) if rep % 2 == 0 else (order[::-1] + order):
                dst = 1 - where
                t0 = time.perf_counter()
                if tool == "numad":
                    p = subprocess.run([NUMAD, "migrate", str(pid), "--to", str(dst), "--json"],
                                       capture_output=True, text=True, check=True)
                    dt = time.perf_counter() - t0
                    out["numad_inprocess"].append(json.loads(p.stdout)["seconds"])
                else:
                    subprocess.run([mp, str(pid), str(where), str(dst)], check=True, capture_output=True)
                    dt = time.perf_counter() - t0
                out[tool].append(dt)
                out["on_target"][tool].append(on_node(h, dst))
                where = dst
        # Fixed costs, once: the CLI when nothing needs moving, a bare interpreter,
        # and the interpreter importing what `migrate` needs without the control client.
        for key, argv in (("numad_noop", [NUMAD, "migrate", str(pid), "--to", str(where), "--json"]),
                          ("python_startup", [PY, "-c", "pass"]),
                          ("python_import_migrate_only", [PY, "-c", "import json, numad_py.errors, "
                                                          "numad_py.units, numad_py.nodes, numad_py.numa, "
                                                          "numad_py.selectors, numad_py.sense.maps"]),
                          ("python_import_cli", [PY, "-c", "import numad_py.cli as c; c.build_parser()"
                                                 " if hasattr(c, 'build_parser') else None"])):
            t0 = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True)
            out[key].append(time.perf_counter() - t0)
    ratio = med([a / b for a, b in zip(out["numad"], out["migratepages"])])
    out["ratio"] = ratio
    out["ratio_inprocess"] = med([a / b for a, b in zip(out["numad_inprocess"], out["migratepages"])])
    out["medians"] = {k: med(v) for k, v in out.items() if isinstance(v, list)}
    RAW["whole"] = out
    log(f"whole: {out['medians']}, ratio {ratio:.3f}")
    m = out["medians"]
    row("4", f"numad-py migrate PID ({mib} MiB) / migratepages, wall time", round(ratio, 3), "<= 1.10",
        ratio <= 1.10, ratios=[a / b for a, b in zip(out["numad"], out["migratepages"])], note=f"{m['numad']:.2f} s vs {m['migratepages']:.2f} s; CLI with nothing to move {m['numad_noop']:.2f} s")
    row("4b", "  same, numad-py's in-process migration time only", round(out["ratio_inprocess"], 3), None, None,
        ratios=[a / b for a, b in zip(out["numad_inprocess"], out["migratepages"])], note=f"interpreter start {m['python_startup']:.2f} s; + numa/maps imports "
        f"{m['python_import_migrate_only']:.2f} s")
    bench_whole_mapped()


# A process of many small mappings, as most are: an interpreter with some of its library
# loaded and a 64 MiB buffer, every page on node 0 to begin with.
MAPPED_SCRIPT = """
import decimal, email.parser, http.client, json, os, sqlite3, sys, xml.dom.minidom
buf = bytearray(64 << 20)
for i in range(0, len(buf), 4096):
    buf[i] = 1
with open(f"/proc/{os.getpid()}/maps") as maps:
    print(json.dumps({"pid": os.getpid(), "mappings": sum(1 for _ in maps)}), flush=True)
sys.stdin.readline()
"""


def bench_whole_mapped() -> None:
    """Whole-process move of a python3 of ~100 mappings: numad-py's in-process seconds ÷
    migratepages' wall time, both moving every page (numad-py --all; migratepages as root
    moves shared pages too), and numad-py's move_pages calls per move (packing)."""
    out: dict = {"numad_inprocess": [], "migratepages": [], "calls": [], "pages_moved": []}
    mp = shutil.which("migratepages")
    with Proc(["numactl", "--membind=0", PY, "-c", MAPPED_SCRIPT]) as p:
        pid, where = p.info["pid"], 0
        out["mappings"] = p.info["mappings"]
        for rep in range(min(ARGS.reps, 3)):
            order = ["numad", "migratepages"]
            for tool in (order + order[::-1]) if rep % 2 == 0 else (order[::-1] + order):
                dst = 1 - where
                if tool == "numad":
                    res = json.loads(subprocess.run([NUMAD, "migrate", str(pid), "--to", str(dst), "--all", "--json"],
                                                    capture_output=True, text=True, check=True).stdout)
                    out["numad_inprocess"].append(res["seconds"])
                    out["calls"].append(res["calls"])
                    out["pages_moved"].append(res["pages_moved"])
                else:
                    t0 = time.perf_counter()
                    subprocess.run([mp, str(pid), str(where), str(dst)], check=True, capture_output=True)
                    out["migratepages"].append(time.perf_counter() - t0)
                where = dst
    ratios = [a / b for a, b in zip(out["numad_inprocess"], out["migratepages"])]
    RAW["whole_mapped"] = out
    log(f"whole_mapped: {out}")
    row("4m", f"  a python3 of {out['mappings']} mappings moved whole: numad-py in-process / migratepages",
        round(med(ratios), 3), None, None, ratios=ratios,
        note=f"move_pages calls per move: {sorted(out['calls'])} for {out['mappings']} mappings (a call each at "
        f"least before one call covered many); pages moved per move: {int(med(out['pages_moved']))}")


# --- issue 2: numastat agreement -------------------------------------------------

def numastat_totals(pid: int) -> dict[int, float]:
    text = subprocess.run(["numastat", "-p", str(pid)], capture_output=True, text=True, check=True).stdout
    header = next(line for line in text.splitlines() if "Node" in line)
    nodes = [int(n) for n in re.findall(r"Node (\d+)", header)]
    total = next(line for line in text.splitlines() if line.startswith("Total"))
    values = [float(v) for v in total.split()[1:]]
    return {n: values[i] * (1 << 20) for i, n in enumerate(nodes)}


def bench_numastat() -> None:
    out = {}
    for kind in ("4k", "thp"):
        with hold(128, 0, kind) as h:
            pid = h.info["pid"]
            before = numastat_totals(pid)
            mig = json.loads(subprocess.run([NUMAD, "migrate", str(pid), "--to", "1", "--json"],
                                            capture_output=True, text=True, check=True).stdout)
            after = numastat_totals(pid)
            show = json.loads(subprocess.run([NUMAD, "show", str(pid), "--json"],
                                             capture_output=True, text=True, check=True).stdout)
            show_nodes = {int(k): v for k, v in show["nodes"].items()}
            total = sum(after.values())
            share = after.get(1, 0) / total
            # Agreement: the largest per-node difference, relative to numastat's total.
            diff = max(abs(show_nodes.get(n, 0) - after.get(n, 0)) for n in set(after) | set(show_nodes)) / total
            out[kind] = {"numastat_before": before, "numastat_after": after, "show": show_nodes,
                         "share_on_target": share, "show_vs_numastat": diff, "migrate": mig}
            log(f"numastat {kind}: {out[kind]}")
    RAW["numastat"] = out
    for kind, label in (("4k", "4K"), ("thp", "THP")):
        o = out[kind]
        row("i2a", f"issue 2: 128 MiB {label} process on target after migrate (numastat -p)",
            f"{o['share_on_target'] * 100:.2f}%", ">= 99%", o["share_on_target"] >= 0.99,
            f"{sum(o['numastat_after'].values()) / 2**20:.1f} MiB total")
        row("i2b", f"issue 2: numad-py show vs numastat, {label} (max node diff / total)",
            f"{o['show_vs_numastat'] * 100:.2f}%", "<= 1%", o["show_vs_numastat"] <= 0.01, "")


# --- 5. fork shim ---------------------------------------------------------------

def bench_fork() -> None:
    script = REPO / "bench" / "bench_fork.py"
    if not script.exists():
        row("5", "fork shim", "n/a", "<= 1.10 / <= 1.03", None, "bench/bench_fork.py not present")
        return
    dest = OUT / "fork.json"
    p = subprocess.run([PY, str(script), "--forks", str(ARGS.forks), "--execs", str(ARGS.forks // 3),
                        "--reps", str(ARGS.fork_reps), "--json", str(dest)],
                       capture_output=True, text=True, timeout=1800)
    print(p.stdout + p.stderr, flush=True)
    if p.returncode != 0 or not dest.exists():
        row("5", "fork shim", "error", "<= 1.10 / <= 1.03", None, f"bench_fork.py exit {p.returncode}")
        RAW["fork"] = {"rc": p.returncode, "stderr": p.stderr[-2000:]}
        return
    res = json.loads(dest.read_text())
    RAW["fork"] = res
    f, e = res["fork_exit_wait_ratio"], res["fork_exec_wait_ratio"]
    ms, paired = res.get("median_seconds", {}), res.get("paired_ratios", {})
    row("5a", "fork+exit+wait with shim / without", f, "<= 1.10", f <= 1.10,
        f"{ms.get('fork_base', 0) * 1e6:.0f} -> {ms.get('fork_shim', 0) * 1e6:.0f} us (bench_fork.py)",
        ratios=paired.get("fork"))
    row("5b", "fork+exec+wait with shim / without", e, "<= 1.03", e <= 1.03,
        f"{ms.get('exec_base', 0) * 1e6:.0f} -> {ms.get('exec_shim', 0) * 1e6:.0f} us (bench_fork.py)",
        ratios=paired.get("exec"))


# --- 6. scan ----------------------------------------------------------------------

def plain_stat_loop() -> int:
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    f.read()
                n += 1
            except OSError:
                pass
    return n


def cpu(fn):
    t0 = time.thread_time()
    w0 = time.perf_counter()
    r = fn()
    return time.thread_time() - t0, time.perf_counter() - w0, r


def bench_scan() -> None:
    tmp = Path("/tmp/numad-bench-scan")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "run").mkdir(parents=True)
    shutil.copytree(REPO / "etc" / "numad-py" / "rules.d", tmp / "rules.d")
    conf = tmp / "numad-py.toml"
    conf.write_text(f'[daemon]\nscan_interval = "10s"\nstate_dir = "{tmp}/state"\nruntime_dir = "{tmp}/run"\n'
                    f'[metrics]\nlisten = ""\n[control]\nsocket = "{tmp}/run/control.sock"\n')
    config = load_config(conf, online_nodes=online_nodes())
    out = {"rules": [r.name for r in config.rules]}
    spawner = subprocess.Popen([str(BIN / "spawn_idle"), str(ARGS.idle)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        out["spawned"] = int(spawner.stdout.readline().split()[1])
        sensor = Sensor()
        sensor.snapshot(config)  # warm: imports, user cache, like a running daemon
        plain_stat_loop()
        snap_cpu, plain_cpu, snap_wall, plain_wall = [], [], [], []
        for rep in range(max(ARGS.reps, 7)):
            steps = [("snap", lambda: sensor.snapshot(config)), ("plain", plain_stat_loop)]
            for name, fn in steps if rep % 2 == 0 else steps[::-1]:
                c, w, r = cpu(fn)
                (snap_cpu if name == "snap" else plain_cpu).append(c)
                (snap_wall if name == "snap" else plain_wall).append(w)
                if name == "plain":
                    out["processes_seen"] = r
        out.update(snap_cpu=snap_cpu, plain_cpu=plain_cpu, snap_wall=snap_wall, plain_wall=plain_wall)
        out["ratio_cpu"] = med([a / b for a, b in zip(snap_cpu, plain_cpu)])
        out["ratio_wall"] = med([a / b for a, b in zip(snap_wall, plain_wall)])
        prof = cProfile.Profile()
        prof.enable()
        sensor.snapshot(config)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(12)
        out["profile"] = buf.getvalue()
        log(f"scan: snapshot {med(snap_cpu) * 1e3:.1f} ms CPU vs plain loop {med(plain_cpu) * 1e3:.1f} ms "
            f"over {out.get('processes_seen')} processes; ratio {out['ratio_cpu']:.3f}")
        out["daemon"] = daemon_share(conf, tmp)
    finally:
        spawner.stdin.close()
        spawner.wait(timeout=60)
    RAW["scan"] = out
    r = out["ratio_cpu"]
    row("6", f"one scan of {out['processes_seen']} processes ({out['spawned']} idle): daemon CPU / plain "
        "/proc/*/stat loop", round(r, 3), "<= 1.5", r <= 1.5,
        ratios=[a / b for a, b in zip(snap_cpu, plain_cpu)], note=f"{med(snap_cpu) * 1e3:.1f} ms vs {med(plain_cpu) * 1e3:.1f} ms CPU")
    d = out["daemon"]
    if "share" in d:
        row("6b", f"daemon CPU share, 10 s interval, {d['window']:.0f} s window", f"{d['share'] * 100:.2f}%", None,
            None, f"{d['cpu_window']:.2f} s CPU in {d['scans']} scans (+ {d['cpu_startup']:.2f} s at startup)")


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def daemon_share(conf: Path, tmp: Path) -> dict:
    logf = open(tmp / "daemon.log", "w")
    p = subprocess.Popen([NUMAD, "run", "--config", str(conf)], stdout=logf, stderr=subprocess.STDOUT)
    try:
        # Startup (imports, first scan: tens of seconds under TCG) is reported apart:
        # the window opens once the daemon's CPU time has stood still for 2 s.
        start, last, still = time.monotonic(), -1.0, 0
        while time.monotonic() - start < 180:
            time.sleep(1)
            if p.poll() is not None:
                return {"error": f"daemon exited {p.returncode}: {(tmp / 'daemon.log').read_text()[-1000:]}"}
            c = proc_cpu(p.pid)
            still = still + 1 if c == last else 0
            last = c
            if still >= 2:
                break
        c0, t0 = proc_cpu(p.pid), time.monotonic()
        time.sleep(ARGS.daemon_seconds)
        c1, t1 = proc_cpu(p.pid), time.monotonic()
        window = t1 - t0
        return {"window": window, "cpu_window": c1 - c0, "cpu_startup": c0, "share": (c1 - c0) / window,
                "scans": int(window // 10), "startup_seconds": t0 - start,
                "log_tail": (tmp / "daemon.log").read_text()[-1500:]}
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        logf.close()


# --- 7. placement benefit ------------------------------------------------------------

def bench_placement() -> None:
    mib, steps, rounds = ARGS.chase_mib, ARGS.chase_steps, 5
    chase = str(BIN / "pointer_chase")
    numactl = shutil.which("numactl")
    out = {"local": [], "remote": [], "moved": [], "migrations": []}
    for rep in range(ARGS.placement_reps):
        for case in (("local", "remote") if rep % 2 == 0 else ("remote", "local")):
            if case == "local":
                p = subprocess.run([numactl, "--cpunodebind=0", "--membind=0", chase, str(mib), str(steps),
                                    str(rounds)], capture_output=True, text=True, check=True)
                lines = [json.loads(x) for x in p.stdout.splitlines()]
                out["local"] += next(x["before"] for x in lines if "before" in x)
                continue
            pr = Proc([numactl, "--cpunodebind=0", "--membind=1", chase, str(mib), str(steps), str(rounds), "wait"])
            try:
                before = pr.read()["before"]
                info = pr.read()
                share_before = numa.range_residency(info["pid"], info["start"], info["end"])["nodes"]
                m = subprocess.run([NUMAD, "migrate", str(info["pid"]), "--to", "0", "--range",
                                    f"{info['start']:x}-{info['end']:x}", "--json"],
                                   capture_output=True, text=True, check=True)
                share_after = numa.range_residency(info["pid"], info["start"], info["end"])["nodes"]
                out["migrations"].append({"result": json.loads(m.stdout), "before": share_before,
                                          "after": share_after})
                pr.send("go")
                pr.read()  # warm
                after = pr.read()["after"]
            finally:
                pr.close()
            out["remote"] += before
            out["moved"] += after
    m = {k: med(out[k]) for k in ("local", "remote", "moved")}
    out["ns_per_load"] = m
    out["ratio_moved"] = m["moved"] / m["local"]
    out["ratio_remote"] = m["remote"] / m["local"]
    RAW["placement"] = out
    log(f"placement: {m}")
    row("7", f"pointer chase {mib} MiB after numad-py moved it / under numactl --membind=0",
        round(out["ratio_moved"], 3), "<= 1.05", out["ratio_moved"] <= 1.05,
        f"{m['moved']:.1f} vs {m['local']:.1f} ns/load")
    row("7b", "  remote (memory on node 1) / local, before the move", round(out["ratio_remote"], 3), None, None,
        "the NUMA penalty this VM shows (TCG models none)")


# --- issue 15: side by side with Debian's numad ----------------------------------------

def bench_numad() -> None:
    import guest_numad  # bench/ is on sys.path: this script's own directory

    res = guest_numad.run(BIN, OUT, window=ARGS.numad_seconds, idle=ARGS.idle, slowdown=slowdown(),
                          daemons=tuple(ARGS.numad_daemons.split(",")), cases=tuple(ARGS.numad_cases.split(",")))
    RAW["numad"] = res["raw"]
    RAW["numad"]["rows"] = res["rows"]
    report_numad(res)


def report_numad(res: dict) -> None:
    """The side-by-side's rows in the table; apart from the run so that rows can be computed
    again from a results.json's raw data."""
    from numad_compare import goal_met

    for r in res["rows"]:
        a, b, rat = r["numad"], r["numad_py"], r["ratio"]
        if isinstance(a, bool):
            row(r["id"], r["figure"], f"numad {'yes' if a else 'no'}, numad-py {'yes' if b else 'no'}", r["goal"],
                not b, "")
            continue
        value = "-" if rat is None else round(rat, 3)
        # Busy figures count only if numad-py placed every workload; idle has no end state, and
        # n2w and n3k compare both daemons per workload placed, and at as many placed as the fewer.
        end_state = r["id"] in ("n5", "n2w", "n3k") or res["raw"]["busy"]["numad-py"]["all_settled_seconds"] is not None
        met = goal_met(r["goal"], rat, end_state=end_state) if r["goal"] != "no" else None
        row(r["id"], r["figure"] + ", numad-py / numad", value, r["goal"], met, f"numad {a}, numad-py {b}")


# --- main ----------------------------------------------------------------------------

def set_numa_balancing(value: str | None) -> str | None:
    path = Path("/proc/sys/kernel/numa_balancing")
    try:
        old = path.read_text().strip()
        if value is not None:
            path.write_text(value)
        return old
    except OSError:
        return None


PRETOUCH_MARGIN = 384 << 20   # bytes left free on each node while it is touched (no OOM kill)


def pretouch_memory() -> dict[int, float]:
    """Write once to each node's free memory, and free it; returns the seconds per node.

    QEMU backs guest RAM with host pages on first touch: the first move into a node's
    never-used pages paid the host's faults as CPU of the mover.  In a fresh guest the
    first of twelve identical 160 MiB moves took 8.2 CPU-s and the eleven after it 3.2-5.7;
    in a guest that touched both nodes first, the first took 5.0 and the seven after it
    3.0-6.6 (2026-12-02).  Whichever daemon moved first in the numad side by side paid it."""
    seconds = {}
    for node in sorted(online_nodes()):
        free = read_node_memory(node)[1] - PRETOUCH_MARGIN
        if free <= 0:
            continue
        t0 = time.monotonic()
        subprocess.run(["numactl", f"--membind={node}", sys.executable, "-c", f"bytearray({free})"], check=True)
        seconds[node] = round(time.monotonic() - t0, 1)
    log(f"pretouched each node's free memory: {seconds} s")
    return seconds


def main() -> int:
    global BIN, OUT, ARGS, CURRENT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", type=Path, required=True, help="the compiled bench/c programs")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--host-memcpy", type=float, default=0.0, help="host memcpy GB/s (for the VM slowdown)")
    ap.add_argument("--only", default=",".join(ALL))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--migrate-block", type=int, default=3,
                    help="repetitions per paired ratio of the migrate rows (median move of each tool)")
    ap.add_argument("--stall-mib", type=int, default=1024)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--daemon-seconds", type=float, default=60)
    ap.add_argument("--forks", type=int, default=200)
    ap.add_argument("--fork-reps", type=int, default=5)
    ap.add_argument("--chase-mib", type=int, default=256)
    ap.add_argument("--chase-steps", type=int, default=2_000_000)
    ap.add_argument("--placement-reps", type=int, default=2)
    ap.add_argument("--numad-seconds", type=float, default=300, help="window per daemon in the numad side-by-side")
    ap.add_argument("--numad-daemons", default="numad,numad-py,numad-py-unscaled", help="which daemons the numad benchmark runs")
    ap.add_argument("--numad-cases", default="busy,idle", help="which of its cases (busy, idle)")
    ARGS = ap.parse_args()
    BIN, OUT = ARGS.bin, ARGS.out
    OUT.mkdir(parents=True, exist_ok=True)
    wanted = [b.strip() for b in ARGS.only.split(",") if b.strip()]
    unknown = set(wanted) - set(ALL)
    if unknown:
        print(f"unknown benchmarks: {sorted(unknown)} (known: {', '.join(ALL)})", file=sys.stderr)
        return 2
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    # Kernel NUMA balancing would move pages behind the benchmarks' back (and undo
    # a move against a bind policy): off for the run, restored after.
    balancing = set_numa_balancing("0")
    meta = {"kernel": platform.release(), "nodes": sorted(online_nodes()), "cpus": os.cpu_count(),
            "thp": thp, "numa_balancing_was": balancing, "python": platform.python_version(),
            "args": {k: str(v) for k, v in vars(ARGS).items()}, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    log(f"guest: {meta}")
    errors = {}
    t0 = time.monotonic()
    try:
        meta["pretouch_seconds"] = pretouch_memory()
        slowdown()
        for name in ALL:
            if name not in wanted:
                continue
            CURRENT = name
            log(f"== {name}")
            b0 = time.monotonic()
            try:
                globals()[f"bench_{name}"]()
            except Exception:
                errors[name] = traceback.format_exc()
                print(errors[name], flush=True)
                row(name, f"{name}: benchmark failed", "error", None, None, errors[name].strip().splitlines()[-1])
            RAW.setdefault("seconds", {})[name] = round(time.monotonic() - b0, 1)
    finally:
        if balancing is not None:
            set_numa_balancing(balancing)
        meta["seconds"] = round(time.monotonic() - t0, 1)
        (OUT / "guest.json").write_text(json.dumps({"meta": meta, "rows": ROWS, "raw": RAW, "errors": errors},
                                                   indent=2, default=str) + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
