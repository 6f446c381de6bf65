"""Rate budget and stall bound for migrations, as pure arithmetic.

The stall bound's rule lives in :mod:`numad_py.stall` (the binding's direct
path uses it too, and must not import the decision core); it is
re-exported here.

Callers pass the clock (``now``) and do the sleeping themselves, so both
are tested without time passing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..stall import MAX_BATCH_PAGES, MIN_BATCH_PAGES, next_batch_pages  # noqa: F401  (one rule, re-exported)


@dataclass
class TokenBucket:
    """A byte budget refilled at ``rate`` bytes/s, holding at most ``burst`` bytes.

    :meth:`reserve` debits at once and returns how long to wait first; the
    balance may go negative so a chunk larger than the burst still passes
    (its debt delays whoever comes next).  A chunk reserves every byte it
    covers, since any of them may move; :meth:`refund` then gives back what
    did not (already there, never touched), so the budget counts bytes moved,
    not bytes walked.  What that costs: a chunk reserved while the bucket is
    empty waits even if nothing of it moves, so each switch from moving pages
    to walking pages in place may wait one chunk (at most the burst) for
    nothing.  ``rate = 0`` means no limit.
    """

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, now: float, *, burst: float | None = None) -> TokenBucket:
        """A full bucket; the burst defaults to one second's worth."""
        if rate < 0:
            raise ValueError(f"budget rate cannot be negative, got {rate}")
        size = rate if burst is None else burst
        if size < 0:
            raise ValueError(f"burst cannot be negative, got {size}")
        return cls(rate=rate, burst=size, tokens=size, updated=now)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)  # a clock stepping back adds nothing
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = max(self.updated, now)

    def available(self, now: float) -> float:
        if self.rate == 0:
            return float("inf")
        self._refill(now)
        return self.tokens

    def reserve(self, nbytes: int, now: float) -> float:
        """Take ``nbytes`` and return the seconds to wait before moving them."""
        if nbytes < 0:
            raise ValueError(f"cannot reserve a negative byte count, got {nbytes}")
        if self.rate == 0:
            return 0.0
        self._refill(now)
        self.tokens -= nbytes
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def refund(self, nbytes: int, now: float) -> None:
        """Give back ``nbytes`` of a reservation that did not move; never above the burst."""
        if nbytes < 0:
            raise ValueError(f"cannot refund a negative byte count, got {nbytes}")
        if self.rate == 0:
            return
        self._refill(now)
        self.tokens = min(self.burst, self.tokens + nbytes)
