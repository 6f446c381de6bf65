"""The guest's NUMA layout is the one tests/vm/run.py asked qemu for, as numad_py.topology reads it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from numad_py.nodes import format_nodes
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
        initiators = base / f"node{node}" / "access0" / "initiators"
        if initiators.is_dir():
            (d / "access0/initiators").mkdir(parents=True)
            for f in initiators.iterdir():
                if f.name.startswith("node"):
                    (d / "access0/initiators" / f.name).symlink_to(f"../../../{f.name}")
                else:
                    (d / "access0/initiators" / f.name).write_text(f.read_text())
    for tier in Path("/sys/devices/virtual/memory_tiering").glob("memory_tier*"):
        (tmp_path / "devices/virtual/memory_tiering" / tier.name).mkdir(parents=True)
        (tmp_path / "devices/virtual/memory_tiering" / tier.name / "nodelist").write_text(
            (tier / "nodelist").read_text())
    copy = read_topology(tmp_path)
    assert copy.node_ids == topo.node_ids
    assert copy.distances == topo.distances
    assert [n.cpus for n in copy.nodes] == [n.cpus for n in topo.nodes]
    assert (copy.tiers, copy.access) == (topo.tiers, topo.access)


# --- memory tiers and HMAT ---------------------------------------------------

TIER_DIR = Path("/sys/devices/virtual/memory_tiering")


def tiers_from_sysfs() -> dict[int, int]:
    """node -> tier, read here without numad_py: memory_tierN/nodelist."""
    tiers = {}
    for d in TIER_DIR.glob("memory_tier*"):
        for part in filter(None, (d / "nodelist").read_text().strip().split(",")):
            lo, _, hi = part.partition("-")
            for node in range(int(lo), int(hi or lo) + 1):
                tiers[node] = int(d.name.removeprefix("memory_tier"))
    return tiers


@pytest.mark.topology("tiered")
@pytest.mark.kernel(">=6.7")  # HMAT's performance numbers place nodes in tiers from 6.7 on
def test_memory_only_node_sits_in_a_lower_tier(topo, vm_spec):
    cpu_nodes = {i for i, n in enumerate(vm_spec["nodes"]) if n["cpus"]}
    slow = {i for i, n in enumerate(vm_spec["nodes"]) if not n["cpus"]}
    raw = tiers_from_sysfs()
    assert {raw[i] for i in cpu_nodes} == {min(raw.values())}, raw   # CPU nodes: one, the fastest tier
    assert all(raw[s] > raw[c] for s in slow for c in cpu_nodes), raw
    assert topo.tiers == raw
    assert topo.slow_tier_nodes == slow

    out = subprocess.run([str(Path(sys.executable).with_name("numad-py")), "topology", "--json"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    shown = json.loads(out)
    tier_of = {n["id"]: n["memory_tier"] for n in shown["nodes"]}
    assert tier_of == raw
    assert [t["tier"] for t in shown["memory_tiers"]] == sorted(set(raw.values()))
    assert shown["memory_tiers"][-1]["nodes"] == format_nodes(slow)


@pytest.mark.topology("tiered")
def test_hmat_latency_and_bandwidth_match_qemu(topo, vm_spec):
    """access0: the best initiator's numbers; qemu's bandwidth "5G" is 5120 MiB/s in sysfs."""
    hmat = vm_spec["hmat"]
    for target, node in enumerate(vm_spec["nodes"]):
        best_latency = min(row[target] for row in hmat["latency_ns"])
        best_bandwidth = max(_size(row[target]) for row in hmat["bandwidth"]) >> 20
        got = topo.access[target]
        assert got.initiators == {target if node["cpus"] else node["initiator"]}, target
        assert (got.read_latency_ns, got.write_latency_ns) == (best_latency, best_latency), target
        assert (got.read_bandwidth_mib_s, got.write_bandwidth_mib_s) == (best_bandwidth, best_bandwidth), target
    slow = max(topo.access, key=lambda n: topo.access[n].read_latency_ns or 0)
    assert not topo.node(slow).has_cpu


@pytest.mark.topology("two", "four", "memonly")
@pytest.mark.kernel_feature("memory_tiers")
def test_without_hmat_every_node_shares_one_tier(topo):
    assert topo.access == {}
    assert topo.memory_tiers == [(min(tiers_from_sysfs().values()), topo.memory_nodes)]
    assert topo.slow_tier_nodes == frozenset()
