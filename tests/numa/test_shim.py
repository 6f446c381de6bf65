"""The fork-time shim on a real multi-node kernel (runs inside the VM).

Residency is always measured from OUTSIDE the process (this test process
calls move_pages on the child's pid via range_residency).
"""

from __future__ import annotations

import errno
import os
import platform
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "shim"))

from shim_helpers import (
    SECCOMP_C, Running, build_c, named_program, rules_env, run_workload, shim_env,
)

from numad_py.numa import range_residency
from numad_py.shim import read_stats

pytestmark = [
    pytest.mark.numa,
    pytest.mark.skipif(not os.environ.get("NUMAD_VM_TOPOLOGY"), reason="needs the multi-node VM"),
]

SIZE_MIB = 64
THRESHOLD = 0.95


def share_on(pid: int, addr: int, size: int, node: int) -> tuple[float, dict]:
    res = range_residency(pid, addr, addr + size)
    return res["nodes"].get(node, 0) / size, res


def run_seed(env: dict, children: int, program: Path | None = None) -> tuple[dict, list[dict], dict]:
    """Start the seed workload, wait for every child, measure, release; returns parent, children, measures."""
    run = Running(["seed", "--size-mib", str(SIZE_MIB), "--children", str(children), "--pin-node", "0",
                   "--fresh-mib", "8"], env, program=program)
    try:
        recs = run.read_until(lambda r: sum(x["kind"] == "child" for x in r) == children
                              and any(x["kind"] == "parent" for x in r), timeout=300)
        parent = next(r for r in recs if r["kind"] == "parent")
        kids = sorted((r for r in recs if r["kind"] == "child"), key=lambda r: r["index"])
        measures = {"parent": range_residency(parent["pid"], parent["addr"], parent["addr"] + parent["size"])}
        for k in kids:
            measures[k["pid"]] = {
                "copies": range_residency(k["pid"], k["addr"], k["addr"] + k["size"]),
                "fresh": range_residency(k["pid"], k["fresh_addr"], k["fresh_addr"] + k["fresh_size"]),
            }
    finally:
        rc = run.finish()
    assert rc == 0
    return parent, kids, measures


def kernel_facts() -> dict:
    """Settings that change where pages are and how move_pages reports them."""
    facts = {}
    for name, path in (("numa_balancing", "/proc/sys/kernel/numa_balancing"),
                       ("thp", "/sys/kernel/mm/transparent_hugepage/enabled"),
                       ("thp_defrag", "/sys/kernel/mm/transparent_hugepage/defrag")):
        try:
            facts[name] = Path(path).read_text().strip()
        except OSError:
            facts[name] = None
    return facts


def frac(res: dict, node: int, size: int) -> float:
    return res["nodes"].get(node, 0) / size


def targets_for(vm_topology: str) -> list[int]:
    return [1] if vm_topology in ("two", "memonly") else [1, 2, 3]


@pytest.mark.topology("two", "four")
def test_seed_scenario_with_shim(vm_topology, tmp_path):
    targets = targets_for(vm_topology)
    strategy = "fixed" if len(targets) == 1 else "spread"
    children = 2 if len(targets) == 1 else 3
    stats = tmp_path / "stats"
    env = shim_env(strategy, set(targets), stats=stats)
    parent, kids, m = run_seed(env, children)
    size = parent["size"]
    p0 = frac(m["parent"], 0, size)
    report = [f"parent on node 0: {p0:.1%} {m['parent']['nodes']} other {m['parent']['other']}",
              f"kernel: {kernel_facts()}"]
    ok = p0 >= THRESHOLD
    for k in kids:
        target = targets[k["index"] % len(targets)]
        c = frac(m[k["pid"]]["copies"], target, size)
        f = frac(m[k["pid"]]["fresh"], target, k["fresh_size"])
        report.append(f"child {k['index']} -> node {target}: copies {c:.1%}, fresh {f:.1%}, "
                      f"policy {k['policy']}")
        ok &= c >= THRESHOLD and f >= THRESHOLD and k["policy"]["nodes"] == [target]
    print("\n".join(["seed scenario WITH shim:", *report]))
    print("shim counters:", read_stats(stats))
    assert ok, "\n".join(report)


@pytest.mark.topology("two", "four")
def test_seed_scenario_without_shim_is_recorded(vm_topology):
    """No assertion on scheduling luck: print where the children's copies went."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMAD_SHIM_") and k != "LD_PRELOAD"}
    parent, kids, m = run_seed(env, 2)
    size = parent["size"]
    print(f"seed scenario WITHOUT shim: parent {m['parent']['nodes']}")
    for k in kids:
        dist = {n: f"{b / size:.1%}" for n, b in m[k["pid"]]["copies"]["nodes"].items()}
        print(f"  child {k['index']} (cpus {k['cpus']}): copies {dist}")


@pytest.mark.topology("two", "four", "memonly")
@pytest.mark.parametrize("how", ["posix_spawn", "subprocess", "subprocess-fork", "fork", "system"])
def test_spawned_program_allocates_on_node(how, vm_topology, tmp_path):
    target = 2 if vm_topology == "memonly" else 1      # memonly: the CPU-less node
    stats = tmp_path / "stats"
    run = Running(["spawn", "--how", how, "--size-mib", "16"], shim_env("fixed", {target}, stats=stats))
    try:
        (rec,) = run.read_until(lambda r: r[-1]["kind"] == "alloc", timeout=300)
        share, res = share_on(rec["pid"], rec["addr"], rec["size"], target)
    finally:
        assert run.finish() == 0
    print(f"{how}: program allocated {share:.1%} on node {target} ({res['nodes']})")
    assert rec["policy"] == {"mode": "preferred", "nodes": [target]}
    assert share >= THRESHOLD
    assert read_stats(stats)["placed"] >= 1


@pytest.mark.topology("two")
def test_cpus_pins_children(topo, tmp_path):
    run = Running(["spawn", "--how", "fork", "--size-mib", "4"], shim_env("fixed", {1}, cpus=True))
    try:
        (rec,) = run.read_until(lambda r: r[-1]["kind"] == "alloc", timeout=300)
    finally:
        assert run.finish() == 0
    assert set(rec["cpus"]) == set(topo.node(1).cpus)


@pytest.mark.kernel_independent
@pytest.mark.topology("two")
def test_threads_fork_concurrently(tmp_path):
    stats = tmp_path / "stats"
    (rec,) = run_workload(["threads", "--threads", "8", "--forks", "1000", "--expect-nodes", "1"],
                          shim_env("fixed", {1}, stats=stats), timeout=900)
    assert rec["forks"] == 1000 and rec["errors"] == [] and rec["wrong_policy"] == 0
    assert rec["after"]["mode"] == "default"
    assert read_stats(stats)["placed"] == 1000


@pytest.mark.kernel_independent
@pytest.mark.topology("two")
@pytest.mark.skipif(platform.machine() != "x86_64", reason="syscall number for x86-64 only")
def test_seccomp_denying_set_mempolicy_keeps_forks_working(tmp_path):
    exe = build_c(tmp_path, "seccomp_deny", SECCOMP_C)
    stats = tmp_path / "stats"
    (rec,) = run_workload(["basic"], shim_env("fixed", {1}, stats=stats),
                          wrap=[str(exe), "238", str(errno.EPERM), "--"])
    assert rec["children"]["os.fork"]["mode"] == "default"
    s = read_stats(stats)
    assert s["fallback_set_policy"] >= 6 and s["placed"] == 0, s


@pytest.mark.topology("two", "four", "memonly")
def test_rules_file_spreads_children_of_the_named_program(vm_topology, tmp_path):
    """No NUMAD_SHIM_* env at all: the daemon-published rules file names the program."""
    from numad_py.config.models import Rule
    from numad_py.shim import publish_shim_rules

    targets = targets_for(vm_topology)
    rules = tmp_path / "shim-rules"
    published = publish_shim_rules(rules, [
        Rule.model_validate({"name": "not-me", "match": {"comm": "python.*"}, "nodes": "0"}),
        Rule.model_validate({"name": "spreader", "match": {"comm": "numad-spreadr"},
                             "spread_children": ",".join(map(str, targets))}),
    ])
    assert published == 1
    stats = tmp_path / "stats"
    program = named_program(tmp_path, "numad-spreadr")
    parent, kids, m = run_seed(rules_env(rules, stats=stats), max(2, len(targets)),
                               program=program)
    size = parent["size"]
    report, ok = [f"parent {parent['policy']}: {m['parent']['nodes']}"], True
    for k in kids:
        target = targets[k["index"] % len(targets)]
        c = frac(m[k["pid"]]["copies"], target, size)
        f = frac(m[k["pid"]]["fresh"], target, k["fresh_size"])
        report.append(f"child {k['index']} -> node {target}: fresh {f:.1%}, copies {c:.1%}, policy {k['policy']}")
        ok &= f >= THRESHOLD and c >= THRESHOLD and k["policy"] == {"mode": "preferred", "nodes": [target]}
    print("\n".join(["rules-file spread:", *report]))
    s = read_stats(stats)
    print("shim counters:", s)
    assert parent["policy"] == {"mode": "default", "nodes": []}
    assert s["rules_matched"] == 1 and s["rules_invalid"] == 0 and s["placed"] == len(kids), s
    assert ok, "\n".join(report)

    # The same program under another name is left alone (and so is python itself).
    other = named_program(tmp_path, "numad-other")
    (rec,) = run_workload(["basic"], rules_env(rules), program=other)
    assert rec["children"]["os.fork"] == {"mode": "default", "nodes": []}
