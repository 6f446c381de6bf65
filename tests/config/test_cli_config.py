"""check-config and plan entry points."""

from __future__ import annotations

import json
from pathlib import Path

from numad_py.cli.config_cmds import check_config_main, plan_main

SHIPPED = Path(__file__).resolve().parents[2] / "etc/numad-py/numad-py.toml"


def test_check_config_ok_on_shipped_defaults(capsys):
    assert check_config_main(str(SHIPPED)) == 0
    assert capsys.readouterr().out.startswith(f"OK: 1 rules from {SHIPPED}, ")


def test_check_config_prints_one_line_per_problem(tmp_path, capsys):
    path = tmp_path / "numad-py.toml"
    path.write_text('[daemon]\ncooldown = "soon"\nfoo = 1\n')
    assert check_config_main(str(path)) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[0] for line in err] == [f"{path}:2", f"{path}:3"]


def test_plan_json_on_this_machine(tmp_path, capsys):
    path = tmp_path / "numad-py.toml"
    path.write_text('[[rule]]\nname = "me"\nmatch.comm = "python.*|pytest.*"\nnodes = "0"\n')
    assert plan_main(str(path), as_json=True) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)
    assert plan_main(str(path), as_json=False) == 0
    assert capsys.readouterr().out
