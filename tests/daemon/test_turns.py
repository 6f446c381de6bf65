"""Scheduled work and each requesting uid take turns chunk by chunk (issue 18 item 6 and the
per-uid share), and a reload reconfigures the one executor without refilling its budget.
The real executor's turns on pages that move: tests/numa/test_pacing.py and test_daemon.py."""

from __future__ import annotations

import threading
import time

from host_memory import MiB, executor
from numad_py.act.pacing import Pacer
from numad_py.stall import StallPolicy
from numad_py.act.turns import REQUEST, SCHEDULE, Turns, holder_of


def test_a_waiting_class_gets_the_next_turn_after_one_chunk():
    turns = Turns()
    order: list[str] = []
    holding = threading.Event()

    def long_request():
        with turns.turn(REQUEST) as turn:
            holding.set()
            for i in range(40):
                turn.chunk_boundary()
                order.append("r")
                if i == 0:      # wait until the scheduled side queues, whatever the host load
                    deadline = time.monotonic() + 10
                    while not turns.other_waiting(REQUEST) and time.monotonic() < deadline:
                        time.sleep(0.001)
                time.sleep(0.005)

    def scheduled():
        holding.wait()
        with turns.turn(SCHEDULE) as turn:
            turn.chunk_boundary()
            order.append("S")

    threads = [threading.Thread(target=long_request), threading.Thread(target=scheduled)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert "S" in order
    assert order.index("S") <= 2, order         # the queued side is next, not after all 40


def test_two_classes_alternate_and_both_finish():
    turns = Turns()
    done = {SCHEDULE: 0, REQUEST: 0}

    def work(who):
        with turns.turn(who) as turn:
            for _ in range(50):
                turn.chunk_boundary()
                done[who] += 1

    threads = [threading.Thread(target=work, args=(w,)) for w in (SCHEDULE, REQUEST, REQUEST)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert done == {SCHEDULE: 50, REQUEST: 100}


def run_holders(turns: Turns, jobs: list[tuple[str, int]]) -> list[str]:
    """Start one thread per (holder, chunks) while a gate holds the turn, then let them go."""
    order: list[str] = []
    gate = threading.Event()

    def work(who: str, chunks: int) -> None:
        with turns.turn(who) as turn:
            for _ in range(chunks):
                turn.chunk_boundary()
                order.append(who)

    def gatekeeper() -> None:
        with turns.turn("gate"):
            gate.wait()

    keeper = threading.Thread(target=gatekeeper)
    keeper.start()
    while not turns._busy:
        time.sleep(0.001)
    threads = [threading.Thread(target=work, args=job) for job in jobs]
    for t in threads:
        t.start()
    while sum(turns._waiting.values()) < len(jobs):      # every job queued behind the gate
        time.sleep(0.001)
    gate.set()
    for t in [keeper, *threads]:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    return order


def test_three_waiting_holders_are_served_round_robin():
    order = run_holders(Turns(), [("uid:1000", 20), ("uid:1001", 20), (SCHEDULE, 20)])
    assert sorted(order) == sorted(["uid:1000"] * 20 + ["uid:1001"] * 20 + [SCHEDULE] * 20)
    # While all three wait, no holder moves two chunks in a row.
    for i in range(45):
        assert len(set(order[i:i + 3])) == 3, order


def test_a_uid_with_two_requests_gets_one_share_not_two():
    # uid 1000 sends two requests, uid 1001 one: per uid, 1001 gets every other chunk and is
    # done after about 40 chunks; per thread it would get a third and finish near the end (60).
    order = run_holders(Turns(), [("uid:1000", 20), ("uid:1000", 20), ("uid:1001", 20)])
    last = max(i for i, who in enumerate(order) if who == "uid:1001")
    assert last < 45, order
    assert order.count("uid:1000") == 40


def test_holders_are_the_loop_or_the_requesting_uid():
    assert holder_of("schedule") == holder_of("auto", 0) == SCHEDULE
    assert holder_of("request", 1000) == "uid:1000" != holder_of("request", 0)
    assert holder_of("drain") == REQUEST


def test_reconfigure_keeps_the_balance_instead_of_refilling():
    now = [0.0]
    pacer = Pacer(10 * MiB, clock=lambda: now[0])
    stop = threading.Event()
    stop.set()                                       # never sleep in this test
    pacer.before_chunk(10 * MiB, stop)              # the bucket is empty now
    pacer.set_rate(20 * MiB)                         # a reload with a bigger budget
    assert pacer._bucket.tokens <= 0                 # no refilled burst
    assert pacer._bucket.reserve(MiB, now[0]) > 0    # the next chunk still waits
    stall = StallPolicy(0.02)
    stall.set_max_stall(0.05)
    assert stall.max_stall == 0.05


def test_a_chunk_returns_the_seconds_it_waited_for_budget():
    pacer = Pacer(MiB)
    stop = threading.Event()
    assert pacer.before_chunk(MiB, stop) == 0.0     # the full bucket: no wait
    assert pacer.before_chunk(MiB // 5, stop) >= 0.15   # a fifth of a second's budget in debt
    stop.set()
    assert pacer.before_chunk(MiB, stop) < 0.1       # a stop cuts the wait short


def test_executor_reconfigure_applies_to_the_same_pacer_and_stall():
    ex = executor(MiB)
    ex.reconfigure(budget=4 * MiB, max_stall=0.1)
    assert ex._pacer.rate == 4 * MiB and ex._stall.max_stall == 0.1
