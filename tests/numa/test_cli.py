"""The numad-py command inside the VM, checked against numastat (numactl) and /proc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import numa_maps_of
from test_binding import numastat_mb, unused_pid

MiB = 1 << 20
NUMAD = str(Path(sys.executable).with_name("numad-py"))


def numad(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([NUMAD, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.topology("two", "four", "memonly")
def test_topology_json_matches_the_vm(vm_spec):
    out = json.loads(numad("topology", "--json").stdout)
    assert [n["id"] for n in out["nodes"]] == list(range(len(vm_spec["nodes"])))
    assert [n["memory_only"] for n in out["nodes"]] == [not n["cpus"] for n in vm_spec["nodes"]]
    if "distances" in vm_spec:
        assert out["distances"]["0"]["3"] == vm_spec["distances"][0][3]


@pytest.mark.topology("two")
def test_migrate_128_mib_process_leaves_99_percent_on_target_by_numastat(workload):
    child = workload("--mib", 128, "--node", 0)
    before = child.checksum()
    assert numastat_mb(child.pid)[0] >= 128

    out = json.loads(numad("migrate", child.pid, "--to", 1, "--all", "--json").stdout)
    assert out["pages_moved"] >= 128 * MiB // 4096

    stat = numastat_mb(child.pid)
    assert stat[1] >= 0.99 * (stat[0] + stat[1]), stat
    assert child.checksum() == before

    # `show` agrees with numastat within 1 % per node.
    shown = json.loads(numad("show", child.pid, "--json").stdout)
    total = sum(stat.values())
    for node, mb in stat.items():
        got = shown["nodes"].get(str(node), 0) / MiB
        assert abs(got - mb) <= 0.01 * total, (node, got, mb)


@pytest.mark.topology("two")
def test_migrate_one_mapping_by_range(workload):
    child = workload("--mib", 16, "--node", 0)
    start, end = child.region()
    proc = numad("migrate", child.pid, "--to", 1, "--range", f"{start:x}-{end:x}")
    assert "moved 4096 pages" in proc.stdout, proc.stdout
    assert numa_maps_of(child.pid, start) == {1: 16 * MiB}
    shown = json.loads(numad("show", child.pid, "--range", f"{start:x}-{end:x}", "--json").stdout)
    assert shown["nodes"] == {"1": 16 * MiB}


@pytest.mark.topology("two")
@pytest.mark.parametrize("args", [
    ("show", "PIDGONE"),
    ("migrate", "PIDGONE", "--to", "1"),
    ("migrate", "PID", "--to", "9"),
    ("migrate", "PID", "--to", "1", "--range", "zz-yy"),
    ("show", "PID", "--range", "2000-1000"),
])
@pytest.mark.kernel_independent
def test_bad_input_is_one_line_and_exit_2(args):
    live = os.getpid()  # a live process is all these need; no workload to start under TCG
    gone = unused_pid()
    argv = [str(live) if a == "PID" else str(gone) if a == "PIDGONE" else a for a in args]
    proc = numad(*argv, check=False)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
