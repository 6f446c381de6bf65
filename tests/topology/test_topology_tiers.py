"""Memory tiers and HMAT access performance, read by numad_py.topology from a literal sysfs tree.

The trees copy what a 6.12 guest with HMAT shows (see tests/vm/run.py's
``tiered`` topology): ``memory_tier4: 0-1``, ``memory_tier72: 2`` and
``nodeN/access0/initiators/{read,write}_{latency,bandwidth}`` plus one
``nodeI`` symlink per best initiator.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from numad_py.cli.commands import cmd_topology
from numad_py.topology import NodeAccess, read_memory_tiers, read_topology

NODES = {0: "0-1", 1: "2-3", 2: ""}  # node 2: memory only


def make_sys(root: Path, nodes: dict[int, str] = NODES, *, tiers: dict[str, str] | None = None,
             access: dict[int, dict] | None = None) -> Path:
    base = root / "devices/system/node"
    base.mkdir(parents=True)
    (base / "online").write_text(",".join(map(str, nodes)) + "\n")
    for i, cpus in nodes.items():
        d = base / f"node{i}"
        d.mkdir()
        (d / "cpulist").write_text(cpus + "\n")
        (d / "meminfo").write_text(f"Node {i} MemTotal:  1048576 kB\nNode {i} MemFree:   524288 kB\n")
        (d / "distance").write_text(" ".join("10" if j == i else "20" for j in nodes) + "\n")
    if tiers is not None:
        tier_dir = root / "devices/virtual/memory_tiering"
        tier_dir.mkdir(parents=True)
        (tier_dir / "power").mkdir()          # real siblings that are not tiers
        (tier_dir / "uevent").write_text("")
        for name, nodelist in tiers.items():
            (tier_dir / name).mkdir()
            (tier_dir / name / "nodelist").write_text(nodelist + "\n")
    for node, spec in (access or {}).items():
        values = dict(spec)
        ini = base / f"node{node}" / "access0" / "initiators"
        ini.mkdir(parents=True)
        for initiator in values.pop("initiators"):
            (ini / f"node{initiator}").symlink_to(f"../../../node{initiator}")
        for name, value in values.items():
            (ini / name).write_text(f"{value}\n")
    return root


def hmat(latency: int, bandwidth: int, initiators=(0,)) -> dict:
    return {"initiators": list(initiators), "read_latency": latency, "write_latency": latency,
            "read_bandwidth": bandwidth, "write_bandwidth": bandwidth}


TIERED = {"tiers": {"memory_tier4": "0-1", "memory_tier72": "2"},
          "access": {0: hmat(100, 20480), 1: hmat(100, 20480, (1,)), 2: hmat(400, 5120)}}


def test_memory_only_node_in_a_slower_tier(tmp_path):
    topo = read_topology(make_sys(tmp_path, **TIERED))
    assert topo.tiers == {0: 4, 1: 4, 2: 72}
    assert topo.memory_tiers == [(4, frozenset({0, 1})), (72, frozenset({2}))]
    assert topo.slow_tier_nodes == {2}
    assert topo.tier_of(2) > topo.tier_of(0)


def test_tiers_order_by_number_not_by_name(tmp_path):
    # "memory_tier100" sorts before "memory_tier72" as text; 100 is the slower tier.
    sys_root = make_sys(tmp_path, tiers={"memory_tier100": "2", "memory_tier72": "1", "memory_tier4": "0"})
    topo = read_topology(sys_root)
    assert [t for t, _ in topo.memory_tiers] == [4, 72, 100]
    assert topo.slow_tier_nodes == {1, 2}


def test_one_tier_means_no_slow_nodes(tmp_path):
    topo = read_topology(make_sys(tmp_path, tiers={"memory_tier4": "0-2"}))
    assert topo.memory_tiers == [(4, frozenset({0, 1, 2}))]
    assert topo.slow_tier_nodes == frozenset()


def test_kernel_without_tiers_or_hmat(tmp_path):
    topo = read_topology(make_sys(tmp_path))
    assert (topo.tiers, topo.access, topo.memory_tiers) == ({}, {}, [])
    data = topo.to_dict()
    assert data["memory_tiers"] == []
    assert [(n["memory_tier"], n["access"]) for n in data["nodes"]] == [(None, None)] * 3


def test_empty_tier_and_offline_node_are_left_out(tmp_path):
    sys_root = make_sys(tmp_path, {0: "0-1", 1: "2-3"},
                        tiers={"memory_tier4": "0-1", "memory_tier72": "", "memory_tier80": "5"})
    assert read_memory_tiers(sys_root) == {0: 4, 1: 4, 5: 80}
    assert read_topology(sys_root).tiers == {0: 4, 1: 4}   # node 5 is not online


def test_access_from_hmat(tmp_path):
    topo = read_topology(make_sys(tmp_path, **TIERED))
    assert topo.access[2] == NodeAccess(frozenset({0}), 400, 400, 5120, 5120)
    assert topo.access[1].initiators == {1}
    assert topo.access[0].read_latency_ns < topo.access[2].read_latency_ns


def test_access_with_missing_or_garbage_values(tmp_path):
    access = {2: {"initiators": [0, 1], "read_latency": 400, "write_latency": "garbage"}}
    topo = read_topology(make_sys(tmp_path, access=access))
    assert set(topo.access) == {2}
    assert topo.access[2] == NodeAccess(frozenset({0, 1}), 400, None, None, None)


def run_cli(sys_root: Path, capsys, *, as_json: bool):
    assert cmd_topology(argparse.Namespace(json=as_json, sys_root=str(sys_root))) == 0
    return capsys.readouterr().out


def test_cli_json_reports_tiers_and_access(tmp_path, capsys):
    out = json.loads(run_cli(make_sys(tmp_path, **TIERED), capsys, as_json=True))
    assert out["memory_tiers"] == [{"tier": 4, "nodes": "0-1"}, {"tier": 72, "nodes": "2"}]
    node2 = out["nodes"][2]
    assert (node2["memory_only"], node2["memory_tier"]) == (True, 72)
    assert node2["access"] == {"initiators": "0", "read_latency_ns": 400, "write_latency_ns": 400,
                               "read_bandwidth_mib_s": 5120, "write_bandwidth_mib_s": 5120}


def test_cli_text_reports_tiers_and_access(tmp_path, capsys):
    out = run_cli(make_sys(tmp_path, **TIERED), capsys, as_json=False)
    lines = out.splitlines()
    node2 = next(line for line in lines if line.startswith("node 2:"))
    assert "(memory only); tier 72" in node2
    assert "from node(s) 0: latency r/w 400/400 ns, bandwidth r/w 5120/5120 MiB/s" in node2
    assert "memory tiers (fastest first): tier 4: 0-1; tier 72: 2" in lines


@pytest.mark.parametrize("tiers", [None, {"memory_tier4": "0-2"}])
def test_cli_text_without_hmat_has_no_access_part(tmp_path, capsys, tiers):
    out = run_cli(make_sys(tmp_path, tiers=tiers), capsys, as_json=False)
    assert "latency" not in out
    assert ("memory tiers" in out) == (tiers is not None)


def test_node_memory_agrees_with_a_line_by_line_parse_of_this_hosts_meminfo():
    import re

    from numad_py.topology import read_node_memory
    text = Path("/sys/devices/system/node/node0/meminfo").read_text()
    kib = {m[1]: int(m[2]) * 1024 for m in re.finditer(r"Node 0 (\w+):\s+(\d+) kB", text)}
    total, free = read_node_memory(0)
    assert total == kib["MemTotal"]
    assert abs(free - kib["MemFree"]) <= kib["MemTotal"] // 10    # free memory moves between two reads
    assert 0 < free < total


def test_node_memory_of_a_file_without_the_lines_is_zero(tmp_path: Path):
    from numad_py.topology import read_node_memory
    node = tmp_path / "devices/system/node/node3"
    node.mkdir(parents=True)
    (node / "meminfo").write_text("Node 3 MemUsed: 5 kB\nNode 3 MemFree: x kB\n")
    assert read_node_memory(3, tmp_path) == (0, 0)
