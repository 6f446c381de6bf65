"""`numad-py exec` with the policy vocabulary, on this host's node: what the program gets,
and one-line refusals for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from numad_py.topology import read_topology

NUMAD = [sys.executable, "-m", "numad_py.cli", "exec"]
NODE0 = min(read_topology().memory_nodes)
# The task policy as the kernel prints it: the policy field of numa_maps' stack line.
PROBE = [sys.executable, "-c",
         "print(next(l.split(' ', 1)[1].split(' stack')[0] for l in open('/proc/self/numa_maps') "
         "if ' stack' in l))"]


def run(*options: str, prog=PROBE) -> subprocess.CompletedProcess:
    return subprocess.run([*NUMAD, *options, "--", *prog], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("options,policy", [
    (["--bind", str(NODE0)], f"bind:{NODE0}"),
    (["--bind", str(NODE0), "--balancing"], f"bind=balancing:{NODE0}"),
    (["--policy", f"preferred-many {NODE0}"], f"prefer (many):{NODE0}"),
    (["--interleave", str(NODE0)], f"interleave:{NODE0}"),
    (["--local"], "local"),
    (["--node", str(NODE0), "--mode", "bind"], f"bind:{NODE0}"),
])
def test_the_program_runs_under_the_policy(options, policy):
    out = run(*options)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == policy


@pytest.mark.skipif(not Path("/sys/kernel/mm/mempolicy/weighted_interleave").is_dir(),
                    reason="no weighted interleave on this kernel")
def test_weighted_interleave_with_the_weights_already_set_needs_no_write():
    weight = Path(f"/sys/kernel/mm/mempolicy/weighted_interleave/node{NODE0}").read_text().strip()
    out = run("--weighted-interleave", f"{NODE0}:{weight}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"weighted interleave:{NODE0}" and out.stderr == ""


@pytest.mark.parametrize("options,needle", [
    (["--bind", "0-1x"], "bad node list"),
    (["--weighted-interleave", "0:3,0:1"], "node 0 is weighted twice"),
    (["--interleave", "0", "--home-node", "0"], "home-node goes with bind or preferred-many"),
    (["--interleave", "0", "--balancing"], "balancing goes with bind or preferred-many"),
    (["--bind", "0", "--home-node", "x"], "'x' is not a whole number"),
    (["--policy", "bind 0 home-node 7"], "home-node 7 is not one of the policy's nodes 0"),
    (["--bind", "999"], "does not exist"),
    (["--local", "--cpus"], "--cpus needs the policy's nodes"),
    (["--spread", "0", "--home-node", "0"], "--home-node goes with a policy option"),
    (["--spread", "0", "--mode", "local"], "--mode: local takes no nodes"),
])
def test_bad_input_is_one_line_exit_2(options, needle):
    out = run(*options, prog=["true"])
    assert out.returncode == 2 and needle in out.stderr and out.stderr.count("\n") == 1, out.stderr
