"""Faults against a real daemon on the host: SIGHUP with hostile files (issue 18 item 8), a huge
scan interval (item 11), the metrics port or the socket already taken and a liveness-checkable
status file (issue 10).  Each prints its figures."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from daemon_proc import NUMAD, RunningDaemon, write_config
from numad_py import procfs

BROKEN_FILES = {
    "invalid UTF-8": b'[[rule]]\nname = "\xff\xfe"\nmatch.comm = "x"\nnodes = "0"\n',
    "10,000 nested arrays": b"x = " + b"[" * 10000 + b"]" * 10000 + b"\n",
    "huge repeat regex": b'[[rule]]\nname = "r"\nmatch.cmdline = "a{99999999999}"\nnodes = "0"\n',
    "huge duration": b'[[rule]]\nname = "d"\nmatch.comm = "x"\nnodes = "0"\nevery = "99999999999999999999999h"\n',
    "NUL bytes": b'[[rule]]\x00\x00name = "n"\n',
    "unterminated table": b"[[rule\n",
    "nodes not a list": b'[[rule]]\nname = "q"\nmatch.comm = "x"\nnodes = "zz"\n',
    "a directory named like a rules file": None,
}
GOOD_RULE = '[[rule]]\nname = "good"\nmatch.comm = "no-such-comm-xyz"\nnodes = "0"\n'


def test_sighup_with_any_broken_file_keeps_the_old_rules(tmp_path):
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "rules.d" / "10-good.toml").write_text(GOOD_RULE)
    d = RunningDaemon(tmp_path)
    try:
        d.wait_log(r"numad-py started: 1 rule")
        failures: list[str] = []
        reloads = r"reload failed, keeping the previous 1 rule|reloaded: "
        for name, content in BROKEN_FILES.items():
            broken = tmp_path / "rules.d" / "50-broken.toml"
            if content is None:
                broken.mkdir()
            else:
                broken.write_bytes(content)
            before = len(re.findall(reloads, d.log()))
            ticks = d.status()["ticks"]
            d.proc.send_signal(signal.SIGHUP)
            # Refused (the old rule kept) or, if the loader takes it, loaded: never a death.
            d.wait_log(reloads, count=before + 1)
            while d.proc.poll() is None and d.status()["ticks"] < ticks + 2:
                time.sleep(0.05)                     # and the loop ticks on with it
            if d.proc.poll() is not None:
                failures.append(name)
                break
            broken.rmdir() if broken.is_dir() else broken.unlink()
            if re.findall(reloads, d.log())[-1] == "reloaded: ":
                d.proc.send_signal(signal.SIGHUP)   # back to the good rule alone
                d.wait_log(reloads, count=before + 2)
        log = d.log()
        assert "Traceback" not in log, log
        status = d.status()
        assert status["rules"] == ["good"] and len(status["errors"]) >= 1
        refused = log.count("reload failed")
        d.proc.send_signal(signal.SIGHUP)          # a good file reloads again
        d.wait_log(r"reloaded: 1 rule")
        alive = d.proc.poll() is None
        print(f"SIGHUP with broken files: attempts={len(BROKEN_FILES)} refused={refused} failures={len(failures)} "
              f"daemon_alive={alive} tracebacks={log.count('Traceback')}")
        assert alive and not failures, failures
        assert d.stop() == 0
    finally:
        d.kill()


def test_a_huge_scan_interval_is_a_config_error_not_a_crash(tmp_path):
    # It used to pass check-config and then kill `run --once` with struct.error.
    config = write_config(tmp_path, interval="3000000h")
    proc = subprocess.run([NUMAD, "run", "--once", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "scan_interval" in proc.stderr and "Traceback" not in proc.stderr and "struct.error" not in proc.stderr
    (tmp_path / "longest").mkdir()
    longest = write_config(tmp_path / "longest", interval="24h")
    proc = subprocess.run([NUMAD, "run", "--once", "--config", str(longest)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_metrics_port_in_use_is_one_line_naming_the_holder_and_leaves_nothing(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        config = write_config(tmp_path, listen=f"127.0.0.1:{port}")
        proc = subprocess.run([NUMAD, "run", "--config", str(config)], capture_output=True, text=True, timeout=60)
    finally:
        holder.close()
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in errors[0], errors
    assert f"held by pid {os.getpid()} (" in errors[0], errors
    run = tmp_path / "run"
    assert not (run / "control.sock").exists() and not (run / "status.json").exists()
    assert sorted(p.name for p in run.iterdir()) == [], list(run.iterdir())


def test_a_second_daemon_on_the_same_socket_names_the_first_and_touches_nothing(tmp_path):
    first = RunningDaemon(tmp_path)
    try:
        first.wait_log(r"numad-py started")
        first.status()                              # its first tick has written the file
        second = subprocess.run([NUMAD, "run", "--config", str(first.config)],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
        assert f"in use by pid {first.proc.pid} (numad-py)" in second.stderr, second.stderr
        # The first one's socket and status file are still there and still say it is alive.
        assert (tmp_path / "run" / "control.sock").exists()
        status = first.status()
        assert status["pid"] == first.proc.pid
        assert abs(procfs.start_time(status["pid"]) - status["start_time"]) < 0.005
        assert status["socket"] == str(tmp_path / "run" / "control.sock")
        assert first.stop() == 0
        # A clean exit removes the status file: no dead daemon can look alive.
        assert not (tmp_path / "run" / "status.json").exists()
        assert not (tmp_path / "run" / "control.sock").exists()
    finally:
        first.kill()


def test_status_file_of_a_killed_daemon_is_detectably_dead(tmp_path):
    d = RunningDaemon(tmp_path)
    d.wait_log(r"numad-py started")
    status = d.status()
    d.kill()                                        # SIGKILL: the file stays behind
    with pytest.raises(procfs.ProcessGone):
        procfs.start_time(status["pid"])
