"""Pre-placement advice in the guest: `numad -w` through the front door answers a node
list libvirt can parse, and the advised nodes really have the room asked for."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

NUMAD_PY = str(Path(sys.executable).with_name("numad-py"))
NODELIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
MiB = 1 << 20


def free_bytes(node: int) -> int:
    for line in Path(f"/sys/devices/system/node/node{node}/meminfo").read_text().splitlines():
        if "MemFree:" in line:
            return int(line.split()[-2]) * 1024
    raise AssertionError("no MemFree")


def cpus_of(node: int) -> int:
    return len(list(Path(f"/sys/devices/system/node/node{node}").glob("cpu[0-9]*")))


def expand(nodelist: str) -> set[int]:
    out: set[int] = set()
    for part in nodelist.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


@pytest.mark.kernel_independent
@pytest.mark.topology("two", "memonly")
def test_numad_w_2_512_gives_a_parsable_list_with_room():
    proc = subprocess.run([sys.executable, "-m", "numad_py.cli.numad_compat", "-w", "2:512"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert NODELIST.match(line), proc.stdout
    nodes = expand(line)
    assert sum(free_bytes(n) for n in nodes) >= 512 * MiB
    assert sum(cpus_of(n) for n in nodes) >= 2
    assert all(cpus_of(n) > 0 for n in nodes)  # never a memory-only node


@pytest.mark.kernel_independent
@pytest.mark.topology("two", "memonly")
def test_advise_json_gives_the_reasons():
    proc = subprocess.run([NUMAD_PY, "advise", "--cpus", "1", "--memory", "256MiB", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["fits"] is True and data["reasons"]
    (node,) = data["nodes"]
    assert free_bytes(node) >= 256 * MiB and cpus_of(node) >= 1
    assert {c["node"] for c in data["candidates"]} == {n for n in (0, 1)}


@pytest.mark.kernel_independent
@pytest.mark.topology("two")
def test_the_daemon_answers_and_two_vms_asking_together_get_different_nodes(tmp_path):
    # Without the daemon both would be sent to the node with the most free memory: the
    # first VM's memory is not allocated yet when the second asks.  The daemon reserves it.
    import os
    import time
    sock = tmp_path / "control.sock"
    config = tmp_path / "numad-py.toml"
    config.write_text(f'[daemon]\nscan_interval = "5s"\nruntime_dir = "{tmp_path}"\n'
                      f'[metrics]\nlisten = ""\n[control]\nsocket = "{sock}"\n')
    (tmp_path / "rules.d").mkdir()
    with open(tmp_path / "daemon.log", "w") as log:
        daemon = subprocess.Popen([NUMAD_PY, "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not sock.exists() and time.monotonic() < deadline:
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
            time.sleep(0.2)
        free = [free_bytes(0), free_bytes(1)]
        assert min(free) > 0.6 * max(free), f"the guest's nodes are too uneven for this test: {free}"
        mib = int(0.9 * min(free)) // MiB       # fits either node, but not twice in the fuller one
        first = subprocess.run([NUMAD_PY, "advise", "--cpus", "1", "--memory", f"{mib}MiB", "--json",
                                "--socket", str(sock)], capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        data = json.loads(first.stdout)
        assert data["source"] == "daemon" and data["reserved_seconds"] > 0, data
        second = subprocess.run([sys.executable, "-m", "numad_py.cli.numad_compat", "-w", f"1:{mib}"],
                                capture_output=True, text=True, timeout=120,
                                env=dict(os.environ, NUMAD_PY_SOCKET=str(sock)))
        assert second.returncode == 0, second.stderr
        assert len(data["nodes"]) == 1 and NODELIST.match(second.stdout.strip()), (data, second.stdout)
        assert expand(second.stdout.strip()) == {0, 1} - set(data["nodes"]), (free, mib, data, second.stdout)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
