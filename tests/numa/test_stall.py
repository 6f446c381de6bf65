"""What the process being moved feels, by the call that moves it (why ``max_stall`` bounds
the mover's time in one call, not the moved process's pause: numad_py/stall.py).

A workload.py child writes one byte of each page of its region over and over and maps,
touches and unmaps 64 KiB every 2 ms in a second thread (``watch``); it reports the longest
pause each thread saw (``watched``).  One ``move_pages`` call moving the whole region leaves
both threads running, on every kernel.  On 6.1 one ``migrate_pages(2)`` call holds the memory
map's lock throughout, so the mapping thread waits for most of it: the contrast shows the
child can feel a stall.  6.12 takes that lock only while it collects the pages (seen in the
guest: a 1.3 s call, pauses of 22 and 45 ms), so there the contrast does not exist.
"""

from __future__ import annotations

import time

import pytest

from numad_py import numa

pytestmark = pytest.mark.topology("two")

MIB = 192                 # under TCG one call moving it takes seconds, far above the pauses
SETTLE = 0.5              # s: the watching threads are in their loops before a call starts


def watched(child, move):
    """Run ``move()`` while the child watches: its seconds, what the child felt, what it returned."""
    child.cmd("watch")
    time.sleep(SETTLE)
    t0 = time.monotonic()
    returned = move()
    took = time.monotonic() - t0
    return took, child.cmd("watched"), returned


def test_one_move_pages_call_does_not_stop_the_process_it_moves(workload):
    child = workload("--mib", MIB, "--node", "0")
    lo, hi = child.region()
    pages = (hi - lo) // numa.PAGE_SIZE
    _took, felt, moved = watched(
        child, lambda: numa.migrate_range(child.pid, lo, hi, {1}, batch_pages=pages, max_stall=None))
    call = moved.longest_call_seconds
    print(f"one move_pages call of {pages} pages: {call:.2f} s; the child's longest pause: "
          f"write {felt['longest_write_s'] * 1e3:.0f} ms, map {felt['longest_map_s'] * 1e3:.0f} ms "
          f"({felt['map_rounds']} maps)")
    assert moved.calls == 1 and moved.moved >= 0.99 * pages
    assert call >= 0.5, f"the call took {call:.2f} s: too quick to tell a stall from a pause"
    assert felt["longest_write_s"] < call / 3
    assert felt["longest_map_s"] < call / 3
    assert felt["map_rounds"] >= 10


@pytest.mark.kernel("<6.12")
def test_one_migrate_pages_call_stops_the_process_it_moves_on_6_1(workload):
    child = workload("--mib", MIB, "--node", "0")
    took, felt, _ = watched(child, lambda: numa.migrate_process(child.pid, {0}, {1}))
    print(f"one migrate_pages(2) call: {took:.2f} s; the child's longest pause: "
          f"write {felt['longest_write_s'] * 1e3:.0f} ms, map {felt['longest_map_s'] * 1e3:.0f} ms")
    assert took >= 0.5
    assert max(felt["longest_write_s"], felt["longest_map_s"]) >= took / 2
