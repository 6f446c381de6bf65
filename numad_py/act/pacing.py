"""The budget and the stall bound, with the clock and the sleeping.

The arithmetic is pure (``decide.budget``); this module owns time: it reads
the monotonic clock and waits on the daemon's stop event, so a SIGTERM cuts
a budget wait short instead of sitting it out.
"""

from __future__ import annotations

import threading
import time

from ..decide.budget import TokenBucket, next_batch_pages

# The first call is not paced by any measurement yet: start small (2 MiB)
# and let the controller double towards the bound.
FIRST_BATCH = 512


class Pacer:
    """Holds migrations to ``rate`` bytes/s over everything the executor does."""

    def __init__(self, rate: float, clock=time.monotonic):
        self._clock = clock
        self._bucket = TokenBucket.full(rate, clock())
        self._lock = threading.Lock()

    def before_chunk(self, nbytes: int, stop: threading.Event) -> None:
        with self._lock:
            wait = self._bucket.reserve(nbytes, self._clock())
        if wait > 0:
            stop.wait(wait)


class StallBound:
    """Adapts the batch so one move_pages call stays under ``max_stall`` seconds."""

    def __init__(self, max_stall: float, batch: int = FIRST_BATCH):
        self.max_stall = max_stall
        self.batch = batch

    def next_batch(self, pages: int, seconds: float) -> int:
        self.batch = next_batch_pages(pages, seconds, max_stall=self.max_stall)
        return self.batch
