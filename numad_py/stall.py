"""The stall bound as arithmetic: how many pages one move_pages call may take.

PURE and at the bottom of the package, so both the decision core
(``decide.budget``) and the binding's direct path (``numa.migrate_ranges``,
used by ``numad-py migrate`` and ``client.move_buffer``) share one rule.

What the bound bounds is the mover's time inside one call: how long a SIGTERM,
a request waiting for its turn or a cancel waits for the call to return.  The
moved process does not stop for the length of a call: ``move_pages`` takes its
memory map's lock per page, and the kernel migrates page by page (6.3+: in
batches of at most 512).  Measured in the 2-node 6.1 guest, a 320 MiB writer with
a thread mapping and unmapping 64 KiB every 2 ms: its longest pause was 83-315 ms
whether one call moved 1,024 or 65,536 pages (25-28 ms idle), while one
``migrate_pages(2)`` call, which on 6.1 holds that lock throughout (6.12 only while
it collects the pages), paused it for 1.6-2.4 s, most of the call
(tests/numa/test_stall.py checks both).  And every call costs the machine, not
only the mover: each first drains every CPU's page lists.
"""

from __future__ import annotations

import statistics
from collections import deque

MIN_BATCH_PAGES = 64
MAX_BATCH_PAGES = 65536
GROW_BELOW = 0.5   # grow when a call took less than half the bound
TARGET_FILL = 0.8  # when shrinking, aim a bit under the bound
# Seconds; [daemon] max_stall's default.  It was 20 ms, sized as if the moved process
# stopped for a call: beside four CPU-busy writers in the 2-node 6.1 guest, moving
# 320 MiB in 1,024-page calls (82 of them) cost 96 µs of CPU a page, in 16,384-page
# calls (7) 69, and migrate_pages(2) in one call 69 (medians of eight moves each).
# 200 ms is what a request waiting for its turn, or a SIGTERM, may wait for a call.
DEFAULT_MAX_STALL = 0.2
# The first call is not paced by any measurement yet: start small (8 MiB, a few ms
# on hardware) and let the controller double towards the bound.
FIRST_BATCH = 2048
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
        self._last_fit = 0.0

    def add(self, pages: int, seconds: float) -> None:
        if pages > 0 and seconds >= 0:
            self._calls.append((pages, seconds))

    def fixed(self) -> float:
        """The least-squares intercept, clamped to [0, the quickest call].

        0 until calls of two sizes were seen.  When time does not grow with
        pages at all, the whole of the quickest call counts as fixed.  When the
        window holds calls of one size only (a batch that settled), the last fit
        stands: dropping it to 0 charged the fixed part to the pages again and
        shrank a settled batch (2,048 then 139 pages at 30 ms + 100 µs a page
        under a 20 ms bound: 139 until the 2,048 left the window, then 64)."""
        if len(self._calls) < 2:
            return 0.0
        xs = [p for p, _ in self._calls]
        ys = [t for _, t in self._calls]
        quickest = min(ys)
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        if sxx == 0:
            return min(self._last_fit, quickest)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
        self._last_fit = quickest if slope <= 0 else min(max(my - slope * mx, 0.0), quickest)
        return self._last_fit

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
