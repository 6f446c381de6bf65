"""The shim takes the whole vocabulary: weighted-interleave children, the balancing flag,
and the home-node environment exec builds (real forks on this host's node)."""

from __future__ import annotations

from pathlib import Path

import pytest

from numad_py.policyspec import parse_policy
from numad_py.shim import build_env, build_policy_env, read_stats
from numad_py.topology import read_topology

from shim_helpers import run_workload, shim_env

NODE0 = min(read_topology().memory_nodes)
HAS_WEIGHTED = Path("/sys/kernel/mm/mempolicy/weighted_interleave").is_dir()


@pytest.mark.skipif(not HAS_WEIGHTED, reason="this kernel has no weighted interleave (Linux 6.9+)")
def test_children_get_weighted_interleave(tmp_path):
    stats = tmp_path / "stats"
    (rec,) = run_workload(["basic"], shim_env("spread", {NODE0}, stats=stats, mode="weighted-interleave"))
    assert rec["children"]["os.fork"] == {"mode": "weighted_interleave", "nodes": [NODE0]}
    s = read_stats(stats)
    assert s["placed"] >= 6 and s["fallback"] == 0, s


def test_balancing_flag_is_taken_for_bind_children(tmp_path):
    stats = tmp_path / "stats"
    env = shim_env("spread", {NODE0}, stats=stats, mode="bind", extra={"NUMAD_SHIM_BALANCING": "1"})
    (rec,) = run_workload(["basic"], env)
    assert rec["children"]["os.fork"] == {"mode": "bind", "nodes": [NODE0]}
    assert read_stats(stats)["fallback"] == 0      # the kernel took bind|MPOL_F_NUMA_BALANCING


def test_balancing_with_interleave_is_refused_by_the_kernel_and_falls_back(tmp_path):
    # The shim passes the flag as told; the kernel refuses it for interleave: the
    # fork falls back to unplaced and says so in the counters (exec refuses earlier).
    stats = tmp_path / "stats"
    env = shim_env("spread", {NODE0}, stats=stats, mode="interleave", extra={"NUMAD_SHIM_BALANCING": "1"})
    (rec,) = run_workload(["basic"], env)
    assert rec["children"]["os.fork"]["mode"] == "default"
    assert read_stats(stats)["fallback"] > 0


def test_env_for_a_policy_preloads_the_shim_only_for_a_home_node():
    base = {"LD_PRELOAD": "/x.so", "NUMAD_SHIM_STRATEGY": "spread", "PATH": "/bin"}
    plain = build_policy_env(base, parse_policy("bind 0"), library="/lib/shim.so")
    assert plain == {"LD_PRELOAD": "/x.so", "PATH": "/bin"}
    home = build_policy_env(base, parse_policy("bind 0-1 home-node 1"), library="/lib/shim.so")
    assert home["LD_PRELOAD"] == "/lib/shim.so /x.so" and home["NUMAD_SHIM_HOME_NODE"] == "1"
    assert "NUMAD_SHIM_STRATEGY" not in home


def test_build_env_passes_balancing():
    env = build_env({}, strategy="spread", nodes={0}, mode="bind", balancing=True, library="/x.so")
    assert env["NUMAD_SHIM_BALANCING"] == "1"
    assert "NUMAD_SHIM_BALANCING" not in build_env({}, strategy="spread", nodes={0}, library="/x.so")
