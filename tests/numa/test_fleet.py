"""One policy for hosts of every shape: the same files start everywhere, and check-config
says on each which rules are active there (the host test runs the same file on one node)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

NUMAD_PY = str(Path(sys.executable).with_name("numad-py"))
POLICY = ('[[rule]]\nname = "cold-to-cxl"\nmatch.comm = "no-such-batch"\nnodes = "memory-only"\n'
          '[[rule]]\nname = "db-on-cpus"\nmatch.comm = "no-such-db"\nnodes = "cpu"\ncpus = true\n')


def write_policy(tmp: Path) -> Path:
    (tmp / "rules.d").mkdir()
    (tmp / "rules.d" / "10-fleet.toml").write_text(POLICY)
    main = tmp / "numad-py.toml"
    main.write_text(f'[daemon]\nscan_interval = "1s"\nruntime_dir = "{tmp}/run"\nstate_dir = "{tmp}/state"\n'
                    f'[metrics]\nlisten = ""\n[control]\nsocket = "{tmp}/run/control.sock"\n')
    return main


@pytest.mark.kernel_independent
@pytest.mark.topology("two", "four", "memonly")
def test_one_policy_starts_everywhere_and_says_what_is_active(tmp_path, vm_spec):
    has_memonly = any(not n["cpus"] for n in vm_spec["nodes"])
    config = write_policy(tmp_path)
    check = subprocess.run([NUMAD_PY, "check-config", str(config)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    state = {name.strip(): rest.strip() for name, _, rest in (line.partition(":") for line in check.stdout.splitlines()[1:])}
    assert state["db-on-cpus"].startswith("active here"), check.stdout
    assert state["cold-to-cxl"].startswith("active here") is has_memonly, check.stdout
    assert state["cold-to-cxl"].startswith("inactive here") is not has_memonly, check.stdout
    run = subprocess.run([NUMAD_PY, "run", "--once", "--config", str(config)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert ("rule 'cold-to-cxl' is inactive here" in run.stderr) is (not has_memonly), run.stderr
