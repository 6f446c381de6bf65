"""The guest's NUMA layout is the one tests/vm/run.py asked qemu for, as numad_py.topology reads it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from numad_py.topology import read_topology


def _size(text: str) -> int:
    return int(text[:-1]) << {"M": 20, "G": 30}[text[-1]]


def test_nodes_and_cpus_match_qemu(topo, vm_spec):
    assert sorted(topo.node_ids) == list(range(len(vm_spec["nodes"])))
    for node_id, want in enumerate(vm_spec["nodes"]):
        node = topo.node(node_id)
        assert node.cpus == frozenset(want["cpus"]), f"node {node_id}"
        # The kernel keeps some memory for itself; node 0 holds most of it.
        assert 0.5 * _size(want["mem"]) < node.mem_total <= _size(want["mem"]), f"node {node_id}"
        assert 0 < node.mem_free <= node.mem_total


def test_memory_only_nodes(topo, vm_spec):
    want = {i for i, n in enumerate(vm_spec["nodes"]) if not n["cpus"]}
    assert topo.memory_only_nodes == frozenset(want)
    assert topo.memory_nodes == topo.node_ids


def test_distances_match_qemu(topo, vm_spec):
    n = len(vm_spec["nodes"])
    want = vm_spec.get("distances") or [[10 if a == b else 20 for b in range(n)] for a in range(n)]
    got = [[topo.distances[(a, b)] for b in range(n)] for a in range(n)]
    assert got == want


@pytest.mark.topology("four")
def test_four_node_distances_are_asymmetric_and_agree_with_numactl(topo, vm_spec):
    """numactl --hardware is an independent reader of the same SLIT."""
    assert topo.distances[(0, 1)] != topo.distances[(1, 0)]
    out = subprocess.run(["numactl", "--hardware"], capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\d+):\s+([\d\s]+)$", line)
        if m:
            rows[int(m.group(1))] = [int(x) for x in m.group(2).split()]
    assert rows == {a: [topo.distances[(a, b)] for b in range(4)] for a in range(4)}
    # The farthest node from 0 by the kernel's table is the one qemu was told.
    far = max(range(1, 4), key=lambda b: topo.distances[(0, b)])
    assert far == max(range(1, 4), key=lambda b: vm_spec["distances"][0][b])


def test_sysfs_root_is_injectable_and_matches(topo, tmp_path):
    """read_topology on a copied tree gives the same answer as on /sys."""
    base = Path("/sys/devices/system/node")
    dst = tmp_path / "devices/system/node"
    dst.mkdir(parents=True)
    (dst / "online").write_text((base / "online").read_text())
    for node in topo.node_ids:
        d = dst / f"node{node}"
        d.mkdir()
        for f in ("cpulist", "distance"):
            (d / f).write_text((base / f"node{node}" / f).read_text())
        (d / "meminfo").write_text((base / f"node{node}" / "meminfo").read_text())
    copy = read_topology(tmp_path)
    assert copy.node_ids == topo.node_ids
    assert copy.distances == topo.distances
    assert [n.cpus for n in copy.nodes] == [n.cpus for n in topo.nodes]
