"""Pure helpers of the numad side-by-side (issue 15): parsing /proc text and reducing samples.

No I/O here, so the host tests (tests/bench/) can check them on literal text.
The guest side that runs the daemons is bench/guest_numad.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

PAGE_KB = 4
_NODE_COUNT = re.compile(r"\bN(\d+)=(\d+)\b")
_PAGE_SIZE = re.compile(r"\bkernelpagesize_kB=(\d+)\b")

# One sample of a workload: (seconds since the daemon started, {node: 4K pages}).
Sample = tuple[float, dict[int, int]]


def node_pages(numa_maps: str) -> dict[int, int]:
    """4K pages per node over every mapping of a /proc/PID/numa_maps text (huge pages counted in 4K)."""
    total: dict[int, int] = {}
    for line in numa_maps.splitlines():
        size = _PAGE_SIZE.search(line)
        scale = int(size.group(1)) // PAGE_KB if size else 1
        for node, count in _NODE_COUNT.findall(line):
            total[int(node)] = total.get(int(node), 0) + int(count) * scale
    return total


def vmstat_value(vmstat: str, key: str) -> int:
    """One counter of /proc/vmstat; a missing key is an error (the kernel lacks the counter)."""
    for line in vmstat.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    raise KeyError(f"/proc/vmstat has no {key}")


def cpu_ticks(stat: str) -> int:
    """utime + stime, in clock ticks, from a /proc/PID/stat text (comm may hold spaces and ')')."""
    fields = stat.rpartition(")")[2].split()
    # fields[0] is field 3 (state) of proc(5); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def share(pages: dict[int, int], node: int) -> float:
    total = sum(pages.values())
    return pages.get(node, 0) / total if total else 0.0


def settle_time(samples: Sequence[Sample], threshold: float = 0.95) -> tuple[int | None, float | None]:
    """(chosen node, seconds) for one workload.

    The chosen node is where most pages are in the last sample; the time is that of the first
    sample from which every later sample keeps >= threshold of the pages on it.  (None, None)
    without samples; (node, None) when the last sample is below the threshold (never placed).
    """
    if not samples:
        return None, None
    last = samples[-1][1]
    if not last:
        return None, None
    node = min(last, key=lambda n: (-last[n], n))
    settled: float | None = None
    for t, pages in samples:
        if share(pages, node) >= threshold:
            if settled is None:
                settled = t
        else:
            settled = None
    return node, settled


def all_settled(times: Sequence[float | None]) -> float | None:
    """When the last workload settled; None if any never did."""
    if not times or any(t is None for t in times):
        return None
    return max(t for t in times if t is not None)


def cpu_after_placement(series: Sequence[tuple[float, float]], settled: float | None,
                        start_cpu: float) -> tuple[float, float] | None:
    """(CPU seconds until the last workload settled, CPU seconds per minute after it) from a
    daemon's cumulative (t, cpu) samples; None when a workload never settled or no sample came
    after it.  ``start_cpu`` is what the daemon had used when the window began."""
    if settled is None:
        return None
    at = next(((t, c) for t, c in series if t >= settled), None)
    if at is None or series[-1][0] <= at[0]:
        return None
    t_end, c_end = series[-1]
    return at[1] - start_cpu, (c_end - at[1]) * 60 / (t_end - at[0])


def value_when_placed(series: Sequence[tuple[float, float]], settle_times: Sequence[float | None], k: int,
                      start: float = 0.0) -> float | None:
    """A cumulative (t, value) series, less ``start``, at its first sample at or after the
    k-th workload settled; None when k < 1, fewer than k settled or no sample came after."""
    done = sorted(t for t in settle_times if t is not None)
    if k < 1 or len(done) < k:
        return None
    return next((v - start for t, v in series if t >= done[k - 1]), None)


def ratio(numad_py: float | None, numad: float | None) -> float | None:
    """numad-py / numad; None when either is missing or numad's is zero."""
    if numad_py is None or numad is None or numad == 0:
        return None
    return numad_py / numad


def goal_met(goal: str, ratio_value: float | None, *, end_state: bool) -> bool | None:
    """A "<= 1.00" goal (numad-py / numad) counts only when numad-py reached the end state:
    moving nothing costs nothing, but places nothing either."""
    if goal == "-":
        return None
    if not end_state or ratio_value is None:
        return False
    return ratio_value <= 1.0


def side_by_side(rows: Sequence[dict]) -> str:
    """The printed table: figure, numad, numad-py, ratio (numad-py / numad)."""
    head = ("figure", "numad", "numad-py", "ratio")
    cells = [(r["figure"], _cell(r["numad"]), _cell(r["numad_py"]), _cell(r.get("ratio"), ratio=True))
             for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head), "  ".join("-" * w for w in widths)] + [fmt.format(*c) for c in cells])


def _cell(value: object, *, ratio: bool = False) -> str:
    if value is None:
        return "-" if ratio else "never"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}" if ratio or value < 1000 else f"{value:.0f}"
    return str(value)


_TRAP = re.compile(r"(?:traps: )?(?P<comm>[^\s\[\]]+)\[(?P<pid>\d+)\]:? (?P<what>.+?)(?: ip:| at [0-9a-f]+ |$)")


def crash_reason(kernel_log: Sequence[str], comm: str) -> str | None:
    """What the kernel logged when a process named ``comm`` died of a fault (``dmesg`` lines:
    "traps: numad[154] trap divide error ip:...", "numad[9]: segfault at 0 ip ..."), the
    last such line's reason; None when there is none."""
    reasons = [m["what"].strip() for line in kernel_log
               if (m := _TRAP.search(line)) is not None and m["comm"] == comm]
    return reasons[-1] if reasons else None


def stale_numad_pidfile(pidfile: str, comm_of_pid: str | None) -> bool:
    """Whether /var/run/numad.pid (text ``pidfile``) is left over from a numad that died.

    numad 0.5 trusts the file while its PID exists: a numad that crashed leaves it behind, and
    once that PID is reused (1,000 idle processes reuse a guest's small PIDs) the next
    ``numad -i 5`` hands its options to that process as to a running daemon and exits 0.
    ``comm_of_pid`` is that PID's comm, None when it has none (gone)."""
    first = pidfile.split()[0] if pidfile.split() else ""
    return not first.isdigit() or comm_of_pid is None or comm_of_pid.strip() != "numad"
