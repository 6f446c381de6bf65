"""scripts/install.sh into a temporary DESTDIR (host only, no root paths touched)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
SCRIPT = REPO / "scripts" / "install.sh"
SLOW = os.environ.get("NUMAD_E2E") == "1" or os.environ.get("CI") == "true"


def install(destdir: Path, *args: str, env: dict | None = None) -> str:
    proc = subprocess.run(["bash", str(SCRIPT), "--destdir", str(destdir), *args],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_files_in_place_and_idempotent(tmp_path):
    out = install(tmp_path, "--no-python")
    unit = tmp_path / "etc/systemd/system/numad-py.service"
    assert unit.read_bytes() == (REPO / "systemd/numad-py.service").read_bytes()
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    shipped = sorted(p.name for p in (REPO / "etc/numad-py/rules.d").glob("*.toml"))
    assert sorted(p.name for p in (tmp_path / "etc/numad-py/rules.d").iterdir()) == shipped
    conf = tmp_path / "etc/numad-py"
    assert oct(conf.stat().st_mode & 0o777) == "0o755"
    assert (conf / "numad-py.toml").read_bytes() == (REPO / "etc/numad-py/numad-py.toml").read_bytes()
    assert f"installed  {unit}" in out
    assert "not reloading systemd" in out

    again = install(tmp_path, "--no-python")
    assert "installed  " not in again and "updated" not in again
    assert f"unchanged  {unit}" in again


def test_user_config_is_never_overwritten_but_the_unit_is(tmp_path):
    install(tmp_path, "--no-python")
    conf = tmp_path / "etc/numad-py/numad-py.toml"
    rule = tmp_path / "etc/numad-py/rules.d" / sorted((REPO / "etc/numad-py/rules.d").glob("*.toml"))[0].name
    unit = tmp_path / "etc/systemd/system/numad-py.service"
    conf.write_text("# mine\n")
    rule.write_text("# mine too\n")
    unit.write_text("# stale\n")
    out = install(tmp_path, "--no-python")
    assert conf.read_text() == "# mine\n" and rule.read_text() == "# mine too\n"
    assert f"kept       {conf}" in out
    assert unit.read_bytes() == (REPO / "systemd/numad-py.service").read_bytes()
    assert f"updated    {unit}" in out


def test_dry_run_changes_nothing(tmp_path):
    out = install(tmp_path, "--no-python", "--dry-run")
    assert "would run: install" in out
    assert not (tmp_path / "etc").exists()


def test_execstart_matches_the_symlink_it_creates():
    unit = (REPO / "systemd/numad-py.service").read_text()
    script = SCRIPT.read_text()
    assert "ExecStart=/usr/local/bin/numad-py " in unit
    assert "bindir=/usr/local/bin" in script


@pytest.mark.skipif(not SLOW, reason="creates a venv and pip-installs the package (network, ~minutes): "
                                    "set NUMAD_E2E=1 (on under CI=true)")
def test_venv_install_under_destdir(tmp_path):
    install(tmp_path, "--prefix", "/opt/numad-py")
    venv = tmp_path / "opt/numad-py"
    link = tmp_path / "usr/local/bin/numad-py"
    assert os.readlink(link) == "/opt/numad-py/bin/numad-py"
    # Shebangs and pyvenv.cfg name the final PREFIX, not the staging dir.
    assert (venv / "bin/numad-py").read_text().splitlines()[0] in ("#!/opt/numad-py/bin/python", "#!/opt/numad-py/bin/python3")
    assert str(tmp_path) not in (venv / "pyvenv.cfg").read_text()
    proc = subprocess.run([str(venv / "bin/python"), "-m", "numad_py.cli", "check-config",
                           str(tmp_path / "etc/numad-py/numad-py.toml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = install(tmp_path, "--prefix", "/opt/numad-py")
    assert f"using venv   {venv}" in again and "unchanged  " + str(link) in again
