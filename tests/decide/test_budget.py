"""Token bucket and stall-bound batch sizing, with literal clock values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from numad_py.decide.budget import MAX_BATCH_PAGES, MIN_BATCH_PAGES, TokenBucket, next_batch_pages

MiB = 1 << 20


def test_full_bucket_passes_a_burst_then_paces():
    bucket = TokenBucket.full(rate=100 * MiB, now=0.0)
    assert bucket.reserve(100 * MiB, now=0.0) == 0.0
    assert bucket.reserve(50 * MiB, now=0.0) == pytest.approx(0.5)
    # half a second later the debt is paid: the next 10 MiB waits 0.1 s
    assert bucket.reserve(10 * MiB, now=0.5) == pytest.approx(0.1)


def test_refill_is_capped_at_the_burst():
    bucket = TokenBucket.full(rate=MiB, now=0.0, burst=2 * MiB)
    bucket.reserve(2 * MiB, now=0.0)
    assert bucket.available(now=1000.0) == 2 * MiB


def test_chunk_larger_than_the_burst_passes_and_delays_the_next():
    bucket = TokenBucket.full(rate=MiB, now=0.0)
    assert bucket.reserve(3 * MiB, now=0.0) == pytest.approx(2.0)
    assert bucket.reserve(MiB, now=2.0) == pytest.approx(1.0)


def test_clock_going_backwards_adds_nothing():
    bucket = TokenBucket.full(rate=MiB, now=10.0)
    bucket.reserve(MiB, now=10.0)
    assert bucket.available(now=5.0) == 0


def test_zero_rate_is_unlimited():
    bucket = TokenBucket.full(rate=0, now=0.0)
    assert bucket.reserve(1 << 40, now=0.0) == 0.0


@pytest.mark.parametrize("rate, burst", [(-1, None), (MiB, -1)])
def test_bad_bucket(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket.full(rate=rate, now=0.0, burst=burst)


def test_negative_reservation_is_refused():
    with pytest.raises(ValueError):
        TokenBucket.full(rate=MiB, now=0.0).reserve(-1, now=0.0)
    with pytest.raises(ValueError):
        TokenBucket.full(rate=MiB, now=0.0).refund(-1, now=0.0)


def test_a_refund_gives_back_what_did_not_move():
    bucket = TokenBucket.full(rate=MiB, now=0.0)
    assert bucket.reserve(MiB, now=0.0) == 0.0
    bucket.refund(MiB, now=0.0)                      # nothing of it moved
    assert bucket.reserve(MiB, now=0.0) == 0.0      # so the next MiB does not wait
    bucket.refund(MiB // 4, now=0.0)                 # a quarter did not move
    assert bucket.reserve(MiB, now=0.0) == pytest.approx(0.75)


def test_a_refund_never_fills_the_bucket_past_its_burst():
    bucket = TokenBucket.full(rate=MiB, now=0.0)
    bucket.refund(10 * MiB, now=0.0)
    assert bucket.available(now=0.0) == MiB
    TokenBucket.full(rate=0, now=0.0).refund(MiB, now=0.0)   # unlimited: nothing to give back


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 64 * MiB), st.floats(0, 1), st.floats(0, 2)), max_size=30))
def test_long_run_rate_of_bytes_moved_never_exceeds_budget_with_refunds(chunks):
    """Each chunk reserves what it covers, moves a share of it and refunds the rest: the bytes
    moved never beat rate × elapsed + burst."""
    rate = 10 * MiB
    bucket = TokenBucket.full(rate=rate, now=0.0)
    now = moved = 0.0
    for nbytes, share, pause in chunks:
        now += pause
        now += bucket.reserve(nbytes, now=now)
        moved_now = int(nbytes * share)
        moved += moved_now
        bucket.refund(nbytes - moved_now, now=now)
        assert moved <= rate * now + rate + 1


@settings(deadline=None)   # pure arithmetic; a loaded CI host must not fail it on time
@given(st.lists(st.tuples(st.integers(0, 64 * MiB), st.floats(0, 2)), max_size=30))
def test_long_run_rate_never_exceeds_budget(chunks):
    """Moving every chunk after its wait never beats rate × elapsed + burst."""
    rate = 10 * MiB
    bucket = TokenBucket.full(rate=rate, now=0.0)
    now = moved = 0.0
    for nbytes, pause in chunks:
        now += pause
        now += bucket.reserve(nbytes, now=now)
        moved += nbytes
        assert moved <= rate * now + rate + 1


@pytest.mark.parametrize(
    "pages, seconds, expected",
    [
        (1024, 0.001, 2048),     # well under 20 ms: double
        (1024, 0.010, 1638),     # exactly half: grow, but only to 80 % of the bound
        (1024, 0.005, 2048),     # a quarter: double (fits 3276)
        (1024, 0.015, 1024),     # between half and the bound: keep
        (1024, 0.020, 1024),     # at the bound: keep
        (1024, 0.040, 409),      # twice over: to 80 % of what fits
        (1024, 10.0, MIN_BATCH_PAGES),   # hopeless: the floor
        (60000, 0.0, MAX_BATCH_PAGES),   # instant: the ceiling
        (0, 0.0, MIN_BATCH_PAGES),       # nothing moved yet: start at the floor
        (1024, -1.0, 2048),      # a clock glitch counts as fast
    ],
)
def test_batch_size_table(pages, seconds, expected):
    assert next_batch_pages(pages, seconds, max_stall=0.02) == expected


@pytest.mark.parametrize("kwargs", [{"max_stall": 0}, {"max_stall": 0.02, "min_pages": 0}, {"max_stall": 0.02, "min_pages": 9, "max_pages": 8}])
def test_batch_size_bad_bounds(kwargs):
    with pytest.raises(ValueError):
        next_batch_pages(100, 0.01, **kwargs)


@given(st.integers(0, 1 << 20), st.floats(-1, 100, allow_nan=False), st.floats(0.001, 1))
def test_batch_size_is_always_clamped(pages, seconds, bound):
    assert MIN_BATCH_PAGES <= next_batch_pages(pages, seconds, max_stall=bound) <= MAX_BATCH_PAGES


def test_batch_size_converges_under_the_bound():
    """A syscall costing 10 µs per page settles at a size that stalls under 20 ms."""
    pages = MIN_BATCH_PAGES
    for _ in range(30):
        pages = next_batch_pages(pages, pages * 10e-6, max_stall=0.02)
    assert pages * 10e-6 <= 0.02
    assert pages * 10e-6 > 0.02 * 0.4


# --- the stall policy the binding's direct path uses by default ------------------

def test_stall_policy_starts_small_and_respects_a_ceiling():
    from numad_py.stall import FIRST_BATCH, StallPolicy

    policy = StallPolicy(0.02)
    assert policy.batch == FIRST_BATCH
    assert policy.next_batch(FIRST_BATCH, 0.001) == FIRST_BATCH * 2      # fast: grows
    assert policy.next_batch(1024, 0.2) < 1024                            # slow: shrinks
    capped = StallPolicy(0.02, ceiling=100)
    assert capped.batch == 100
    assert capped.next_batch(100, 0.0001) == 100                          # never past the ceiling
    with pytest.raises(ValueError):
        StallPolicy(0)


def test_decide_budget_reexports_the_one_stall_rule():
    from numad_py import stall
    from numad_py.decide import budget

    assert budget.next_batch_pages is stall.next_batch_pages


# --- the fixed cost of a call, which no batch size removes -------------------------

def test_call_cost_fits_the_fixed_part():
    from numad_py.stall import CallCost

    cost = CallCost()
    assert cost.fixed() == 0.0                       # nothing seen yet
    for pages in (64, 128, 256, 512):
        cost.add(pages, 0.020 + pages * 100e-6)      # 20 ms per call + 100 µs per page
    assert cost.fixed() == pytest.approx(0.020)
    assert cost.page_seconds(128, 0.020 + 128 * 100e-6) == pytest.approx(128 * 100e-6)


def test_call_cost_is_never_more_than_the_quickest_call_nor_negative():
    from numad_py.stall import CallCost

    flat = CallCost()
    for pages, seconds in ((64, 0.05), (512, 0.04), (128, 0.06)):   # time does not grow with pages
        flat.add(pages, seconds)
    assert flat.fixed() == 0.04
    steep = CallCost()
    for pages in (100, 200, 400):
        steep.add(pages, pages * 1e-4 - 0.005)       # a negative intercept
    assert steep.fixed() == 0.0
    same = CallCost()
    same.add(64, 0.03)
    same.add(64, 0.01)
    assert same.fixed() == 0.0                       # one size only: nothing to fit


def test_call_cost_forgets_old_calls():
    from numad_py.stall import FIT_CALLS, CallCost

    cost = CallCost()
    for pages in (64, 128) * FIT_CALLS:
        cost.add(pages, 0.5 + pages * 1e-4)          # a busy spell
    for pages in (64, 128) * FIT_CALLS:
        cost.add(pages, pages * 1e-4)                # the machine calmed down
    assert cost.fixed() == pytest.approx(0.0, abs=1e-9)


def test_call_cost_keeps_its_fit_once_the_batch_settles():
    """A window of one batch size only (the batch settled) has nothing to fit: the last
    fit stands, where 0 charged the fixed part to the pages again and shrank the batch."""
    from numad_py.stall import FIT_CALLS, CallCost

    cost = CallCost()
    for pages in (2048, 139):
        cost.add(pages, 0.030 + pages * 100e-6)
    assert cost.fixed() == pytest.approx(0.030)
    for _ in range(FIT_CALLS):
        cost.add(139, 0.030 + 139 * 100e-6)
    assert cost.fixed() == pytest.approx(0.030)
    for _ in range(FIT_CALLS):
        cost.add(139, 0.010)                         # quicker than the fit: never above the quickest
    assert cost.fixed() == pytest.approx(0.010)


def test_stall_policy_does_not_shrink_for_a_cost_it_cannot_remove():
    """Calls costing 30 ms + 100 µs per page, bound 20 ms: the old rule shrank to the
    64-page floor; the fitted rule settles where the pages take at most the bound."""
    from numad_py.stall import StallPolicy

    policy = StallPolicy(0.02)
    pages = policy.batch
    for _ in range(40):
        pages = policy.next_batch(pages, 0.030 + pages * 100e-6)
    assert pages * 100e-6 <= 0.02
    assert pages * 100e-6 > 0.02 * 0.4
    plain = MIN_BATCH_PAGES
    for _ in range(40):
        plain = next_batch_pages(plain, 0.030 + plain * 100e-6, max_stall=0.02)
    assert plain == MIN_BATCH_PAGES


@given(st.lists(st.tuples(st.integers(1, 65536), st.floats(0, 10, allow_nan=False)), min_size=0, max_size=40))
def test_call_cost_fixed_part_is_bounded(calls):
    from numad_py.stall import CallCost

    cost = CallCost()
    for pages, seconds in calls:
        cost.add(pages, seconds)
    recent = calls[-16:]
    assert 0.0 <= cost.fixed() <= (min(s for _, s in recent) if recent else 0.0)


def test_a_quick_chunk_cut_short_by_its_mapping_keeps_the_batch():
    """Before: every small mapping (1 page, then 33...) restarted the ramp from 64 pages."""
    from numad_py.stall import FIRST_BATCH, StallPolicy

    policy = StallPolicy(0.3)
    assert policy.next_batch(FIRST_BATCH, 0.05) == 2 * FIRST_BATCH      # a full chunk, quick: grows
    assert policy.next_batch(1, 0.03) == 2 * FIRST_BATCH                 # one page, quick: kept
    assert policy.next_batch(33, 0.01) == 2 * FIRST_BATCH
    assert policy.next_batch(700, 0.6) < 700                             # cut short but slow: shrinks


def _settled_policy(rate: float, bound: float):
    """A StallPolicy after twenty calls at ``rate`` seconds a page, and its batch."""
    from numad_py.stall import StallPolicy

    policy = StallPolicy(bound)
    pages = policy.batch
    for _ in range(20):
        pages = policy.next_batch(pages, pages * rate)
    return policy, pages


def test_one_slow_call_among_quick_ones_keeps_the_batch():
    """A call preempted for 300 ms would be as slow with fewer pages: no shrink, no grow."""
    policy, pages = _settled_policy(20e-6, 0.131)
    assert pages * 20e-6 <= 0.131
    assert policy.next_batch(pages, 0.3 + pages * 20e-6) == pages
    assert policy.next_batch(pages, pages * 20e-6) == pages           # and the quick calls go on as before


def test_a_slower_rate_that_lasts_shrinks_the_batch_within_three_calls():
    policy, pages = _settled_policy(20e-6, 0.131)
    sizes = []
    for _ in range(3):
        pages = policy.next_batch(pages, pages * 200e-6)                # ten times slower from now on
        sizes.append(pages)
    assert sizes[-1] * 200e-6 <= 0.131
    assert sizes[0] == sizes[1] > sizes[2]                              # two slow calls are not yet a median


@pytest.mark.parametrize("slow", [0.14, 0.5, 5.0])
def test_a_call_over_the_bound_never_grows_the_batch(slow):
    from numad_py.stall import StallPolicy

    policy = StallPolicy(0.131)
    for pages in (512, 1024, 2048):
        policy.next_batch(pages, pages * 1e-6)                          # quick: the median is tiny
    before = policy.batch
    assert policy.next_batch(before, slow) <= before


def test_a_quick_call_grows_only_when_the_median_is_quick_too():
    policy, pages = _settled_policy(20e-6, 0.131)
    for _ in range(2):
        policy.next_batch(pages, pages * 60e-6)                         # slower, still under the bound
    settled = policy.batch
    assert policy.next_batch(settled, settled * 1e-6) <= settled        # one quick call: the median says 60 µs
