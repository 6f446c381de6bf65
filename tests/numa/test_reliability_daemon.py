"""Faults against the real daemon on a 2-node kernel: SIGKILL in the middle of a migration and a
restart (issue 18's fault suite), with the status file telling the dead daemon from the live one
(issue 10).  Prints its figures: attempts, failures, daemon alive, data lost."""

from __future__ import annotations

import json
import signal
import time

import pytest

from test_daemon import Daemon, rule_for, share_on, wait_share
from numad_py import procfs

pytestmark = [pytest.mark.topology("two"), pytest.mark.kernel_independent]


def test_sigkill_mid_migration_then_restart_places_everything_and_loses_nothing(workload, tmp_path):
    child = workload("--mib", "24", "--policy", "preferred", "--node", "0", "--seed", "120")
    start, _ = child.region()
    before = child.cmd("checksum")
    rules = rule_for(120, "1")
    first = Daemon(tmp_path, rules, daemon_toml='budget = "2MiB"')
    try:
        deadline = time.monotonic() + 150
        while share_on(child.pid, start, 1) < 0.1 and time.monotonic() < deadline:
            time.sleep(0.1)
        moved_at_kill = share_on(child.pid, start, 1)
        status_file = tmp_path / "run" / "status.json"
        status = json.loads(status_file.read_text())
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=60)
    finally:
        first.log_file.close()
    assert 0.0 < moved_at_kill < 0.9, f"killed at {moved_at_kill:.0%}: not mid-migration"
    # The file outlived its daemon; its pid/start_time say it is dead.
    assert status_file.exists() and status["pid"] == first.proc.pid
    with pytest.raises(procfs.ProcessGone):
        procfs.start_time(status["pid"])

    second = Daemon(tmp_path, rules, daemon_toml='budget = "2MiB"')
    try:
        share = wait_share(child.pid, start, 1, 0.99, timeout=180)
        after = child.cmd("checksum")
        live = json.loads(status_file.read_text())
        alive = second.proc.poll() is None
        lost = before != after
        print(f"SIGKILL mid-migration at {moved_at_kill:.0%}, restart: attempts=1 failures={int(share < 0.99)} "
              f"daemon_alive={alive} data_lost={lost}")
        assert share >= 0.99, second.log()
        assert not lost and alive
        assert live["pid"] == second.proc.pid
        assert abs(procfs.start_time(live["pid"]) - live["start_time"]) < 0.005
        assert "Traceback" not in second.log()
        assert second.stop(timeout=60) < 60
        assert not status_file.exists()              # removed on a clean exit
    finally:
        if second.proc.poll() is None:
            second.proc.kill()
