"""The systemd watchdog, kept by a heartbeat thread that pings only while work progresses.

Pinging from the loop alone went silent for 36-39 s during one long
migration (issue 18 item 9): the loop was inside the executor.  Here a
thread sends ``WATCHDOG=1`` every WatchdogSec/4 (so never more than
WatchdogSec/2 apart, with room for scheduling jitter) as long as something
called :meth:`Heartbeat.beat` within ``stuck_after`` seconds: the loop on
each stage and while it sleeps, the executor after every chunk and every
slice of a budget wait.  If nothing beats for ``stuck_after`` (default
WatchdogSec) the pings stop and systemd restarts the daemon, which is what
the watchdog is for: a loop that is truly stuck.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("numad_py.daemon")


class Heartbeat:
    def __init__(self, notifier, *, stuck_after: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._notifier = notifier
        half = notifier.watchdog_interval          # WatchdogSec/2, or None without a watchdog
        self.ping_every = half / 2 if half else None
        self.stuck_after = stuck_after if stuck_after is not None else (2 * half if half else None)
        self._clock = clock
        self._last = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._silent = False

    @property
    def enabled(self) -> bool:
        return self.ping_every is not None

    def beat(self) -> None:
        """Something made progress just now (cheap: one float store, no lock)."""
        self._last = self._clock()

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self.beat()
        self._notifier.watchdog()
        self._thread = threading.Thread(target=self._run, name="numad-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        assert self.ping_every is not None and self.stuck_after is not None
        while not self._stop.wait(self.ping_every):
            idle = self._clock() - self._last
            if idle < self.stuck_after:
                if self._silent:
                    log.warning("progress again: watchdog pings resume")
                    self._silent = False
                self._notifier.watchdog()
            elif not self._silent:
                self._silent = True
                log.error("no progress for %.0f s: watchdog pings stop, systemd will restart the daemon",
                          idle)
