"""The stall bound as arithmetic: how many pages one move_pages call may take.

PURE and at the bottom of the package, so both the decision core
(``decide.budget``) and the binding's direct path (``numa.migrate_ranges``,
used by ``numad-py migrate`` and ``client.move_buffer``) share one rule: a
process being moved stalls the same whoever moves it.
"""

from __future__ import annotations

import statistics
from collections import deque

MIN_BATCH_PAGES = 64
MAX_BATCH_PAGES = 65536
GROW_BELOW = 0.5   # grow when a call took less than half the bound
TARGET_FILL = 0.8  # when shrinking, aim a bit under the bound
DEFAULT_MAX_STALL = 0.02   # seconds; [daemon] max_stall's default
# The first call is not paced by any measurement yet: start small (2 MiB)
# and let the controller double towards the bound.
FIRST_BATCH = 512
FIT_CALLS = 16     # the calls the fixed-cost fit looks back on
RATE_CALLS = 5     # the calls whose median page rate sizes the next batch


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


class CallCost:
    """A move_pages call's time as ``fixed + per_page * pages``, fitted on the last calls.

    Why the fixed part is not charged to the bound: every call pays a part no
    batch size shortens (the syscall, the pid and mm lookups, and the kernel
    draining every CPU's page lists before it isolates a page,
    ``lru_cache_disable``), and the target runs meanwhile.  Beside four
    CPU-busy writers in the 2-node 6.1 guest that part was ~20 ms of CPU per
    call: charging it, the controller shrank towards 64-page calls and made
    621 of them for 160 MiB (17.7 s of CPU, where one call took 5.6 s).  With
    the fit: 523 and 544 calls, 13.9 and 13.1 s (one run each way).
    """

    def __init__(self, window: int = FIT_CALLS):
        self._calls: deque[tuple[int, float]] = deque(maxlen=window)

    def add(self, pages: int, seconds: float) -> None:
        if pages > 0 and seconds >= 0:
            self._calls.append((pages, seconds))

    def fixed(self) -> float:
        """The least-squares intercept, clamped to [0, the quickest call].

        0 until calls of two sizes were seen.  When time does not grow with
        pages at all, the whole of the quickest call counts as fixed."""
        if len(self._calls) < 2:
            return 0.0
        xs = [p for p, _ in self._calls]
        ys = [t for _, t in self._calls]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        if sxx == 0:
            return 0.0
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
        quickest = min(ys)
        if slope <= 0:
            return quickest
        return min(max(my - slope * mx, 0.0), quickest)

    def page_seconds(self, pages: int, seconds: float) -> float:
        """Record a call; return the part of it spent on its pages."""
        self.add(pages, seconds)
        return max(seconds - self.fixed(), 0.0)


class StallPolicy:
    """A batch-size policy: ``next_batch(pages, seconds)`` keeps one call's page work under ``max_stall``.

    ``ceiling`` caps every batch (a caller's ``--batch``); the first batch is
    the smaller of ``FIRST_BATCH`` and the ceiling.  The call's fixed cost is
    fitted and left out (:class:`CallCost`).  A quick chunk smaller than the
    batch (cut short where its memory ends) leaves the batch as it is.

    A call over the bound shrinks the batch only as far as the median page
    rate of the last ``RATE_CALLS`` calls says, and never grows it; a quick
    call grows it only when the median is quick too.  Why: a call that was slow
    because the mover was preempted would be as slow with fewer pages, so
    shrinking for it only adds calls, and each call drains every CPU's page
    lists.  Beside four CPU-busy workloads in the 2-node 6.1 guest a call cost
    ~9 ms of CPU on top of its pages (160 MiB in 512-page calls: 4.9 CPU-s, in
    4096-page calls: 3.6), and moves under a 131 ms bound went from 82 calls
    and 4.0 CPU-s (following the last call) to 44 calls and 3.5 CPU-s, the
    longest call 363 ms either way (eight moves each, interleaved).  A slower
    rate that lasts moves the median within three calls.
    """

    def __init__(self, max_stall: float = DEFAULT_MAX_STALL, *, ceiling: int = MAX_BATCH_PAGES):
        if ceiling < 1:
            raise ValueError(f"a batch needs at least one page, got {ceiling}")
        self.set_max_stall(max_stall)
        self.ceiling = ceiling
        self.batch = min(FIRST_BATCH, ceiling)
        self.cost = CallCost()
        self.rates: deque[float] = deque(maxlen=RATE_CALLS)   # seconds of page work per page

    def set_max_stall(self, max_stall: float) -> None:
        if max_stall <= 0:
            raise ValueError(f"max_stall must be positive, got {max_stall}")
        self.max_stall = max_stall

    def next_batch(self, pages: int, seconds: float) -> int:
        work = self.cost.page_seconds(pages, seconds)
        if pages < self.batch and work <= self.max_stall * GROW_BELOW:
            # A chunk cut short by the end of its memory, and quick: it says nothing
            # against the batch it was cut from.  Doubling from its size instead made
            # every small mapping restart the ramp from 64 pages.
            return self.batch
        if pages > 0:
            self.rates.append(work / pages)
        typical = statistics.median(self.rates) * pages if self.rates else work
        if work > self.max_stall:
            batch = min(self.batch, next_batch_pages(pages, typical, max_stall=self.max_stall))
        else:
            batch = next_batch_pages(pages, max(work, typical), max_stall=self.max_stall)
        self.batch = min(self.ceiling, batch)
        return self.batch
