"""The stall bound as arithmetic: how many pages one move_pages call may take.

PURE and at the bottom of the package, so both the decision core
(``decide.budget``) and the binding's direct path (``numa.migrate_ranges``,
used by ``numad-py migrate`` and ``client.move_buffer``) share one rule: a
process being moved stalls the same whoever moves it.
"""

from __future__ import annotations

MIN_BATCH_PAGES = 64
MAX_BATCH_PAGES = 65536
GROW_BELOW = 0.5   # grow when a call took less than half the bound
TARGET_FILL = 0.8  # when shrinking, aim a bit under the bound
DEFAULT_MAX_STALL = 0.02   # seconds; [daemon] max_stall's default
# The first call is not paced by any measurement yet: start small (2 MiB)
# and let the controller double towards the bound.
FIRST_BATCH = 512


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


class StallPolicy:
    """A batch-size policy: ``next_batch(pages, seconds)`` keeps one call under ``max_stall``.

    ``ceiling`` caps every batch (a caller's ``--batch``); the first batch is
    the smaller of ``FIRST_BATCH`` and the ceiling.
    """

    def __init__(self, max_stall: float = DEFAULT_MAX_STALL, *, ceiling: int = MAX_BATCH_PAGES):
        if max_stall <= 0:
            raise ValueError(f"max_stall must be positive, got {max_stall}")
        if ceiling < 1:
            raise ValueError(f"a batch needs at least one page, got {ceiling}")
        self.max_stall = max_stall
        self.ceiling = ceiling
        self.batch = min(FIRST_BATCH, ceiling)

    def next_batch(self, pages: int, seconds: float) -> int:
        self.batch = min(self.ceiling, next_batch_pages(pages, seconds, max_stall=self.max_stall))
        return self.batch
