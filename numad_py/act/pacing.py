"""The budget, with the clock and the sleeping.

The arithmetic is pure (``decide.budget``); this module owns time: it reads
the monotonic clock and waits on the daemon's stop event, so a SIGTERM cuts
a budget wait short instead of sitting it out.  It can be reconfigured in
place (a reload): the bucket keeps what it holds, so a SIGHUP never refills
the burst.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..decide.budget import TokenBucket

# A long budget wait is cut into slices, each followed by a heartbeat: a
# daemon waiting for its budget is working as configured, not hung.
WAIT_SLICE = 1.0


class Pacer:
    """Holds migrations to ``rate`` bytes/s over everything the executor does."""

    def __init__(self, rate: float, clock=time.monotonic, beat: Callable[[], None] | None = None):
        self._clock = clock
        self._bucket = TokenBucket.full(rate, clock())
        self._lock = threading.Lock()
        self._beat = beat

    @property
    def rate(self) -> float:
        return self._bucket.rate

    def set_rate(self, rate: float) -> None:
        """A new budget; the balance carries over (capped at the new burst), no refill."""
        if rate < 0:
            raise ValueError(f"budget rate cannot be negative, got {rate}")
        with self._lock:
            now = self._clock()
            self._bucket.available(now)           # settle the refill at the old rate first
            self._bucket.updated = max(self._bucket.updated, now)
            self._bucket.rate = rate
            self._bucket.burst = rate
            self._bucket.tokens = min(self._bucket.tokens, rate)

    def chunk_bytes(self) -> float | None:
        """The most one chunk should take: one second of budget (the burst); None = no limit.

        A chunk waits for its budget while it holds the executor's turn; a chunk
        the stall bound alone let grow (2 MiB at 1 MiB/s when this was found) kept
        the other holders waiting for all of it (issue 18 item 6)."""
        rate = self._bucket.rate
        return rate if rate > 0 else None

    def before_chunk(self, nbytes: int, stop: threading.Event) -> float:
        """Reserve the chunk's ``nbytes`` (all may move), wait until the budget covers them,
        and return the seconds waited."""
        with self._lock:
            wait = self._bucket.reserve(nbytes, self._clock())
        if wait <= 0:
            return 0.0
        start = self._clock()
        deadline = start + wait
        while wait > 0 and not stop.is_set():
            stop.wait(min(wait, WAIT_SLICE))
            if self._beat is not None:
                self._beat()
            wait = deadline - self._clock()
        return self._clock() - start

    def after_chunk(self, reserved: int, moved: int) -> None:
        """Refund what the chunk reserved and did not move (pages already there or absent)."""
        with self._lock:
            self._bucket.refund(max(0, reserved - moved), self._clock())
