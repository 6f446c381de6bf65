"""WATCHDOG=1 keeps coming during a long migration and stops when the loop is stuck
(issue 18 item 9), checked on a fake $NOTIFY_SOCKET: a datagram socket we bind ourselves."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "harness"))

from notify_socket import NotifySocket as _NotifySocket
from daemon_fakes import FakeExecutor, Script, action, make_daemon
from host_memory import MiB, Buffer, executor
from numad_py.daemon.notify import Notifier
from numad_py.daemon.watchdog import Heartbeat


class NotifySocket(_NotifySocket):
    def notifier(self, watchdog_sec: float) -> Notifier:
        return Notifier({"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": str(int(watchdog_sec * 1e6)),
                         "WATCHDOG_PID": str(os.getpid())})


def max_gap(times: list[float]) -> float:
    return max(b - a for a, b in zip(times, times[1:]))


def test_pings_never_more_than_half_the_watchdog_apart_during_a_long_migration(tmp_path):
    # WatchdogSec=2 s; the tick moves 12 MiB at a 2 MiB/s budget (about 5 s) with the real
    # executor: before the heartbeat, the loop sent nothing until the migration ended.
    watchdog_sec = 2.0
    notify = NotifySocket(tmp_path / "notify.sock")
    notifier = notify.notifier(watchdog_sec)
    heartbeat = Heartbeat(notifier)
    buf = Buffer(12 * MiB)
    d = make_daemon(tmp_path, script=Script(plan_actions=[buf.action()]), notifier=notifier,
                    heartbeat=heartbeat, executor=executor(2 * MiB, beat=heartbeat.beat))
    t0 = time.monotonic()
    assert d.run(once=True) == 0
    elapsed = time.monotonic() - t0
    time.sleep(0.1)
    notify.close()
    assert elapsed > 4.0, "the migration was not paced: the test proves nothing"
    outcome = d.state.recent[-1]
    assert outcome.status == "done" and outcome.result.pages_requested == 12 * MiB // 4096
    pings = notify.pings()
    assert len(pings) >= 8, pings
    assert pings[0] - t0 < watchdog_sec / 2
    assert max_gap(pings) <= watchdog_sec / 2, [round(b - a, 3) for a, b in zip(pings, pings[1:])]
    print(f"watchdog: {len(pings)} pings over {elapsed:.1f} s of migration, "
          f"largest gap {max_gap(pings):.2f} s (limit {watchdog_sec / 2:.2f} s)")


def test_pings_stop_while_the_loop_is_stuck_and_resume_after(tmp_path):
    watchdog_sec = 1.0                   # ping every 0.25 s; stuck after 1 s without progress
    notify = NotifySocket(tmp_path / "notify.sock")
    notifier = notify.notifier(watchdog_sec)
    heartbeat = Heartbeat(notifier)
    stuck = {}

    def hang():                          # the first action hangs: no chunk, no beat (a hung syscall)
        if stuck:
            return
        stuck["from"] = time.monotonic()
        time.sleep(3.0)
        stuck["to"] = time.monotonic()

    d = make_daemon(tmp_path, script=Script(plan_actions=[action()]), notifier=notifier,
                    heartbeat=heartbeat, executor=FakeExecutor(work=hang), scan_interval="100ms")
    thread = threading.Thread(target=d.run, daemon=True)
    thread.start()
    time.sleep(4.0)
    d.request_stop()
    thread.join(timeout=10)
    notify.close()
    silent = notify.pings(stuck["from"] + watchdog_sec + 0.3, stuck["to"] - 0.05)
    assert silent == [], "pinged while nothing progressed"
    assert notify.pings(stuck["from"], stuck["from"] + watchdog_sec - 0.3), "stopped too early"
    assert notify.pings(stuck["to"] + 0.05, stuck["to"] + 0.8), "did not resume with progress"


def test_no_watchdog_no_thread(tmp_path):
    heartbeat = Heartbeat(Notifier({}))
    heartbeat.start()
    assert not heartbeat.enabled and heartbeat._thread is None
