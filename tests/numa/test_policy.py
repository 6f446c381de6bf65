"""Issue 13 in the kernel: exec with the whole policy vocabulary, rules that interleave
running processes, and the one-line error where the kernel lacks a mode.

Where pages are is read from /proc/PID/numa_maps here (conftest.numa_maps_of),
not through the binding under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import WORKLOAD, Child, numa_maps_of

pytestmark = pytest.mark.topology("two")

NUMAD = str(Path(sys.executable).with_name("numad-py"))
MiB = 1 << 20
WEIGHTS = Path("/sys/kernel/mm/mempolicy/weighted_interleave")


class ExecChild(Child):
    """workload.py started through ``numad-py exec OPTIONS --`` (same line protocol as Child)."""

    def __init__(self, options: list[str], argv: list[str], *, prefix: tuple[str, ...] = ()):
        self.argv = argv
        self.timeout = 120.0
        self.proc = subprocess.Popen(
            [*prefix, NUMAD, "exec", *options, "--", sys.executable, str(WORKLOAD), *argv],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.info = self._read()
        self.pid = self.info["pid"]


@pytest.fixture
def exec_child():
    children: list[ExecChild] = []

    def start(options, argv, **kw) -> ExecChild:
        child = ExecChild(list(options), [str(a) for a in argv], **kw)
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


@pytest.fixture
def weight_table():
    """The machine's weighted-interleave weights, restored after the test."""
    saved = {p: p.read_text() for p in WEIGHTS.glob("node*")}
    yield
    for path, text in saved.items():
        path.write_text(text)


def split_of(child: Child) -> dict[int, int]:
    start, _ = child.region()
    return numa_maps_of(child.pid, start)


# --- exec ---------------------------------------------------------------------------

@pytest.mark.kernel_feature("weighted_interleave")
def test_exec_weighted_interleave_lands_three_to_one(exec_child, weight_table):
    child = exec_child(["--weighted-interleave", "0:3,1:1"], ["--mib", "64", "--seed", "1301"])
    split = split_of(child)
    assert child.info["policy"]["mode"] == 6 and child.info["policy"]["nodes"] == [0, 1]
    assert abs(split.get(0, 0) - 48 * MiB) <= 0.05 * 64 * MiB, split
    assert abs(split.get(1, 0) - 16 * MiB) <= 0.05 * 64 * MiB, split
    assert (WEIGHTS / "node0").read_text().strip() == "3" and (WEIGHTS / "node1").read_text().strip() == "1"


@pytest.mark.kernel_feature("weighted_interleave")
def test_weights_command_shows_and_sets_the_table(weight_table):
    out = subprocess.run([NUMAD, "weights", "--set", "0:2,1:5", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"0": 2, "1": 5}
    assert (WEIGHTS / "node1").read_text().strip() == "5"
    bad = subprocess.run([NUMAD, "weights", "--set", "0:0"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "1-255" in bad.stderr


@pytest.mark.kernel_feature("set_mempolicy_home_node")
@pytest.mark.parametrize("home,expected", [(None, 0), ("1", 1)], ids=["no-home-node", "home-node-1"])
def test_exec_home_node_with_bind_puts_the_allocation_on_it(exec_child, topo, home, expected):
    # Run on node 0's CPUs: without a home node, bind 0-1 allocates locally (node 0),
    # so the home-node case landing on node 1 is the home node's doing.
    cpus = ",".join(str(c) for c in sorted(topo.node(0).cpus))
    options = ["--bind", "0-1"] + (["--home-node", home] if home else [])
    child = exec_child(options, ["--mib", "64", "--seed", "1302"], prefix=("taskset", "-c", cpus))
    split = split_of(child)
    assert split.get(expected, 0) >= 0.95 * 64 * MiB, split
    assert child.info["policy"]["mode"] == 2 and child.info["policy"]["nodes"] == [0, 1]


@pytest.mark.kernel_feature("weighted_interleave")
def test_exec_balancing_flag_reaches_the_policy(exec_child):
    child = exec_child(["--bind", "0-1", "--balancing"], ["--mib", "1", "--seed", "1303"])
    assert child.info["policy"]["mode"] == 2 | (1 << 13)   # MPOL_F_NUMA_BALANCING in get_mempolicy's mode


# --- a running process under a weighted rule ----------------------------------------

def _config(tmp: Path, rule: str) -> Path:
    (tmp / "rules.d").mkdir(exist_ok=True)
    (tmp / "run").mkdir(exist_ok=True)
    path = tmp / "numad-py.toml"
    path.write_text(f'[daemon]\nruntime_dir = "{tmp}/run"\nstate_dir = "{tmp}/state"\nbudget = 0\n'
                    f'[metrics]\nlisten = ""\n[control]\nsocket = "{tmp}/run/control.sock"\n')
    (tmp / "rules.d" / "10-test.toml").write_text(rule)
    return path


WEIGHTED_RULE = ('[[rule]]\nname = "wi"\nmatch.cmdline = "workload.py.*--seed 1310"\nmemory = ["anon"]\n'
                 'policy = { mode = "weighted-interleave", weights = { 0 = 1, 1 = 1 } }\n')


@pytest.mark.kernel_feature("weighted_interleave")
def test_running_process_is_interleaved_one_to_one_and_then_converged(workload, tmp_path):
    child = workload("--mib", "128", "--policy", "preferred", "--node", "0", "--seed", "1310")
    assert split_of(child).get(0, 0) >= 0.99 * 128 * MiB
    before = child.checksum()
    config = _config(tmp_path, WEIGHTED_RULE)
    run = subprocess.run([NUMAD, "run", "--once", "--config", str(config)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    split = split_of(child)
    for node in (0, 1):
        assert abs(split.get(node, 0) - 64 * MiB) <= 0.05 * 128 * MiB, split
    assert child.checksum() == before
    # A second pass: nothing left to do for it.
    second = subprocess.run([NUMAD, "plan", "--json", "--config", str(config)], capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert [a for a in json.loads(second.stdout) if a["pid"] == child.pid] == []


@pytest.mark.kernel_feature("weighted_interleave")
def test_plan_says_new_allocations_follow_only_under_exec(workload, tmp_path):
    child = workload("--mib", "16", "--policy", "preferred", "--node", "0", "--seed", "1310")
    config = _config(tmp_path, WEIGHTED_RULE)
    out = subprocess.run([NUMAD, "plan", "--json", "--config", str(config)], capture_output=True, text=True)
    (action,) = [a for a in json.loads(out.stdout) if a["pid"] == child.pid]
    assert action["kind"] == "migrate" and action["weights"] == {"0": 1, "1": 1}
    assert "new allocations follow it only in processes started through `numad-py exec`" in action["reason"]


# --- a kernel without weighted interleave (6.1) ----------------------------------------

@pytest.mark.kernel_lacks("weighted_interleave")
def test_weighted_rule_is_a_one_line_check_config_error(tmp_path):
    config = _config(tmp_path, WEIGHTED_RULE)
    out = subprocess.run([NUMAD, "check-config", str(config)], capture_output=True, text=True)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].endswith("rules[0].policy: memory policy weighted-interleave is unsupported on this kernel "
                             "(needs Linux 6.9+)"), lines


@pytest.mark.kernel_lacks("weighted_interleave")
def test_exec_weighted_interleave_is_a_one_line_error():
    out = subprocess.run([NUMAD, "exec", "--weighted-interleave", "0:3,1:1", "--", "true"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr == ("numad-py exec: memory policy weighted-interleave is unsupported on this kernel "
                          "(needs Linux 6.9+)\n")


# --- the control socket ----------------------------------------------------------------

def test_socket_migrate_with_weighted_policy_places_page_by_page(workload, tmp_path):
    import threading

    from numad_py.act.executor import Executor
    from numad_py.act.pacing import Pacer
    from numad_py.stall import StallPolicy
    from numad_py.client import Client
    from numad_py.control.server import ControlServer
    from numad_py.numa import query_pages
    from numad_py.topology import read_topology

    child = workload("--mib", "32", "--policy", "preferred", "--node", "0", "--seed", "1320")
    start, end = child.region()
    before = child.checksum()
    ex = Executor(topology=read_topology, pacer=Pacer(0), stall=StallPolicy(0.02), stop=threading.Event())
    srv = ControlServer(str(tmp_path / "control.sock"), executor=ex, mode="0600", progress_interval=0.0,
                        status=lambda: {}).start()
    try:
        out = Client(srv.socket_path).request("migrate", pid=child.pid, policy="weighted-interleave 0:3,1:1",
                                              range=f"{start:x}-{end:x}")
    finally:
        srv.stop()
    assert out["status"] == "done", out
    page = child.info["page_size"]
    # page i of the range on the weighted round-robin's node: 0, 0, 0, 1, 0, 0, 0, 1, ...
    nodes = query_pages(child.pid, [start + i * page for i in range(64)])
    assert nodes == [0, 0, 0, 1] * 16
    split = split_of(child)
    assert split == {0: 24 * MiB, 1: 8 * MiB}, split
    assert child.checksum() == before


def test_cli_migrate_with_an_interleave_policy_places_page_by_page(workload):
    """`numad-py migrate PID --policy 'interleave 0-1' --range R` (no daemon): page i on node i % 2."""
    from numad_py.numa import query_pages

    child = workload("--mib", "16", "--policy", "preferred", "--node", "0", "--seed", "1321")
    start, end = child.region()
    before = child.checksum()
    out = subprocess.run([NUMAD, "migrate", str(child.pid), "--policy", "interleave 0-1",
                          "--range", f"{start:x}-{end:x}", "--json"], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    page = child.info["page_size"]
    assert query_pages(child.pid, [start + i * page for i in range(64)]) == [0, 1] * 32
    assert split_of(child) == {0: 8 * MiB, 1: 8 * MiB}
    assert child.checksum() == before
    both = subprocess.run([NUMAD, "migrate", str(child.pid), "--to", "1", "--policy", "interleave 0-1"],
                          capture_output=True, text=True, timeout=240)
    assert both.returncode == 2 and both.stderr.count("\n") == 1 and "--to NODES or --policy" in both.stderr


# --- auto and memory-only nodes ----------------------------------------------------------

@pytest.mark.topology("memonly")
def test_auto_sends_a_process_to_the_cpu_node_not_the_emptier_memory_only_one(workload, tmp_path):
    """Node 2 has no CPUs and the most free memory; node 0 is made the fullest.  Auto picks
    node 1: memory placed where no CPU is near it is for tier rules and rules naming nodes."""
    from numad_py.topology import read_topology
    assert 2 in read_topology().memory_only_nodes
    hogs = [workload("--mib", "200", "--node", "0", "--seed", str(seed)) for seed in (1320, 1321)]
    child = workload("--mib", "16", "--node", "0", "--reset-policy", "--seed", "1322")
    assert all(numa_maps_of(c.pid, c.region()[0]) == {0: 200 * MiB} for c in hogs)
    config = _config(tmp_path, '[[rule]]\nname = "a"\nmatch.cmdline = "workload.py.*--seed 1322"\nnodes = "auto"\n')
    out = subprocess.run([NUMAD, "plan", "--json", "--config", str(config)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    (action,) = [a for a in json.loads(out.stdout) if a["pid"] == child.pid]
    assert action["target_nodes"] == "1", action
