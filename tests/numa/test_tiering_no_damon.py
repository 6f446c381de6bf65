"""A kernel without DAMON's sysfs interface (Debian's 6.1): a tier rule is one line at
check-config, and the daemon runs the other rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import numa_maps_of

pytestmark = [pytest.mark.kernel_lacks("damon"), pytest.mark.topology("two")]

NUMAD = str(Path(sys.executable).with_name("numad-py"))


def test_tier_rule_is_inactive_without_damon_and_the_rest_runs(tmp_path, workload):
    w = workload("--mib", "16", "--node", "0", "--seed", "4141")
    (tmp_path / "rules.d").mkdir()
    config = tmp_path / "numad-py.toml"
    config.write_text(f'[daemon]\nruntime_dir = "{tmp_path}/run"\nstate_dir = "{tmp_path}/state"\n'
                      f'[metrics]\nlisten = ""\n[control]\nsocket = "{tmp_path}/run/control.sock"\n')
    (tmp_path / "rules.d" / "10.toml").write_text(
        '[[rule]]\nname = "tiered"\nmatch.comm = "memcached"\ntier = { fast = "0", slow = "1" }\n'
        '[[rule]]\nname = "moved"\nmatch.cmdline = "workload.py.*--seed 4141"\nnodes = "1"\n')
    out = subprocess.run([NUMAD, "check-config", str(config)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "tiered: inactive here: needs DAMON (6.x with CONFIG_DAMON_SYSFS)" in out.stdout
    assert "moved: active here" in out.stdout
    run = subprocess.run([NUMAD, "run", "--once", "--config", str(config)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "rule 'tiered' is inactive here: needs DAMON" in run.stdout + run.stderr
    start, _end = w.region()
    per_node = numa_maps_of(w.pid, start)
    assert per_node.get(1, 0) >= 0.9 * sum(per_node.values())
