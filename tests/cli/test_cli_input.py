"""The CLI on the host: bad input is exit 2 before any pid or privilege matters,
and `status` tells a live daemon from a file left behind (exit 3, as systemctl)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from numad_py import procfs
from numad_py.cli import main
from numad_py.topology import read_topology

MISSING_NODE = str(max(read_topology().node_ids) + 7)


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "numad_py.cli", *argv], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "NUMAD_PY_SOCKET": "/nonexistent.sock"})


@pytest.mark.parametrize("pid", ["1", str(os.getpid()), "999999999", "abc"])
def test_a_node_that_does_not_exist_is_exit_2_whatever_the_pid(pid):
    proc = run("migrate", pid, "--to", MISSING_NODE)
    assert proc.returncode == 2, proc.stderr
    assert f"node {MISSING_NODE} does not exist" in proc.stderr
    assert "permission" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("pid", ["²", "１２", "١٢", "1²", "-1", "0", "", "1 2"])
def test_pids_are_ascii_digits_only(pid, capsys):
    assert main(["migrate", pid, "--to", "0"]) == 2
    assert "bad pid" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["migrate", "{pid}", "--to", "0", "--range", ""],
    ["migrate", "{pid}", "--to", "0", "--mapping", "  "],
    ["show", "{pid}", "--range", ""],
])
def test_empty_range_or_mapping_is_an_error_not_everything(argv, capsys):
    argv = [a.format(pid=os.getpid()) for a in argv]
    assert main(argv) == 2
    assert "is empty" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    ([], "give --to NODES or --policy"),
    (["--to", "0", "--policy", "interleave 0"], "give --to NODES or --policy"),
    (["--policy", "bind 0"], "--policy bind: use --to for a node set"),
    (["--policy", "interleave 0-7x"], "--policy: "),
    (["--policy", "weighted-interleave 0:0"], "--policy: "),
    (["--policy", f"interleave {MISSING_NODE}"], "does not exist"),
])
def test_migrate_policy_is_checked_before_anything_moves(extra, message, capsys):
    assert main(["migrate", str(os.getpid()), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def _status_file(tmp_path, **fields):
    data = {"pid": os.getpid(), "ticks": 1, "config": "x.toml", "rules": [], "managed": {},
            "recent": [], "errors": [], **fields}
    (tmp_path / "status.json").write_text(json.dumps(data))


def test_status_of_a_dead_daemon_is_exit_3(tmp_path, capsys):
    dead = subprocess.Popen(["true"])
    dead.wait()
    _status_file(tmp_path, pid=dead.pid)
    assert main(["status", "--runtime-dir", str(tmp_path), "--socket", str(tmp_path / "none")]) == 3
    assert "has exited" in capsys.readouterr().out


def test_status_of_a_reused_pid_is_exit_3(tmp_path, capsys):
    _status_file(tmp_path, start_time=procfs.start_time(os.getpid()) - 1000)
    assert main(["status", "--runtime-dir", str(tmp_path), "--socket", str(tmp_path / "none")]) == 3
    assert "another process" in capsys.readouterr().out


def test_status_with_no_daemon_and_no_file_is_exit_3_in_json(tmp_path, capsys):
    assert main(["status", "--json", "--runtime-dir", str(tmp_path), "--socket", str(tmp_path / "s")]) == 3
    assert json.loads(capsys.readouterr().out)["running"] is False


def test_status_of_a_live_daemon_whose_socket_is_silent_says_so(tmp_path, capsys):
    _status_file(tmp_path, start_time=procfs.start_time(os.getpid()))
    assert main(["status", "--runtime-dir", str(tmp_path), "--socket", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert "running" in out and "does not answer" in out


def test_the_fleet_policy_on_this_one_node_host(tmp_path):
    # The same files the VM test runs in the 2-node, 4-node and memory-only guests.
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "numa"))
    from test_fleet import write_policy
    config = write_policy(tmp_path)
    proc = run("check-config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "cold-to-cxl: inactive here: this machine has no memory-only node" in proc.stdout
    assert "db-on-cpus: active here" in proc.stdout


@pytest.mark.parametrize("argv", [["drain", "--node", "１"], ["exec", "--node", "١", "--", "true"],
                                  ["migrate", "1", "--to", "0", "--batch", "²"]])
def test_numeric_options_take_ascii_digits_only(argv):
    proc = run(*argv)
    assert proc.returncode == 2 and "is not a whole number" in proc.stderr, proc.stderr
