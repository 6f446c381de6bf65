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
