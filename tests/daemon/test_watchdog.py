"""WATCHDOG=1 stops when the loop is stuck and resumes with progress (issue 18 item 9),
checked on a fake $NOTIFY_SOCKET: a datagram socket we bind ourselves.  That the pings keep
coming through a long paced migration needs pages that move: tests/numa/test_daemon.py."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "harness"))

from notify_socket import NotifySocket as _NotifySocket
from daemon_fakes import FakeExecutor, Script, action, make_daemon
from numad_py.daemon.notify import Notifier
from numad_py.daemon.watchdog import Heartbeat


class NotifySocket(_NotifySocket):
    def notifier(self, watchdog_sec: float) -> Notifier:
        return Notifier({"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": str(int(watchdog_sec * 1e6)),
                         "WATCHDOG_PID": str(os.getpid())})


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
