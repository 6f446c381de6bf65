"""Rate budget and stall bound for migrations, as pure arithmetic.

Callers pass the clock (``now``) and do the sleeping themselves, so both
are tested without time passing.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_BATCH_PAGES = 64
MAX_BATCH_PAGES = 65536
GROW_BELOW = 0.5   # grow when a call took less than half the bound
TARGET_FILL = 0.8  # when shrinking, aim a bit under the bound


@dataclass
class TokenBucket:
    """A byte budget refilled at ``rate`` bytes/s, holding at most ``burst`` bytes.

    :meth:`reserve` debits at once and returns how long to wait first; the
    balance may go negative so a chunk larger than the burst still passes
    (its debt delays whoever comes next).  ``rate = 0`` means no limit.
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



def next_batch_pages(
    last_pages: int,
    last_seconds: float,
    *,
    max_stall: float,
    min_pages: int = MIN_BATCH_PAGES,
    max_pages: int = MAX_BATCH_PAGES,
) -> int:
    """The next batch size so one syscall stays under ``max_stall`` seconds.

    Well under the bound (< half): double, capped at what fits in 80 % of it.  Over it: scale down to the pages
    that fit in 80 % of the bound at the rate just observed.  In between:
    keep.  Always clamped to ``[min_pages, max_pages]``.
    """
    if max_stall <= 0:
        raise ValueError(f"max_stall must be positive, got {max_stall}")
    if not 0 < min_pages <= max_pages:
        raise ValueError(f"need 0 < min_pages <= max_pages, got {min_pages}, {max_pages}")
    pages = max(last_pages, 1)
    if last_seconds <= max_stall * GROW_BELOW:
        # Double, but never past what the observed rate fits in 80 % of the
        # bound: a call at 50 % doubled would land right at the bound.
        fits = pages * max_stall * TARGET_FILL / last_seconds if last_seconds > 0 else float("inf")
        proposal = int(min(pages * 2, fits))
    elif last_seconds > max_stall:
        proposal = int(pages * (max_stall * TARGET_FILL) / last_seconds)
    else:
        proposal = pages
    return max(min_pages, min(max_pages, proposal))
