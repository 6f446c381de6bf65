"""Scheduled work and requests take turns chunk by chunk (issue 18 item 6), and a reload
reconfigures the one executor without refilling its budget."""

from __future__ import annotations

import threading
import time

from host_memory import MiB, Buffer, executor
from numad_py.act.pacing import Pacer, StallBound
from numad_py.act.turns import REQUEST, SCHEDULE, Turns


def test_a_waiting_class_gets_the_next_turn_after_one_chunk():
    turns = Turns()
    order: list[str] = []
    holding = threading.Event()

    def long_request():
        with turns.turn(REQUEST) as turn:
            holding.set()
            for _ in range(40):
                turn.chunk_boundary()
                order.append("r")
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
    assert order.index("S") < 5, order          # one or two request chunks, not all 40


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


def test_scheduled_work_runs_while_a_long_request_holds_the_real_executor():
    # A request moving 8 MiB at 2 MiB/s (about 3 s) and a scheduled action started 0.5 s in:
    # the scheduled one must finish long before the request does.
    ex = executor(2 * MiB)
    big, small = Buffer(8 * MiB), Buffer(256 << 10)
    finished: dict[str, float] = {}

    def run(act, reason):
        outcome = ex.execute(act, reason=reason)
        assert outcome.status == "done", outcome
        finished[reason] = time.monotonic()

    t0 = time.monotonic()
    request = threading.Thread(target=run, args=(big.action(), "request"))
    request.start()
    time.sleep(0.5)
    run(small.action(), "schedule")
    request.join(timeout=30)
    assert finished["request"] - t0 > 2.0, "the request was not paced: the test proves nothing"
    assert finished["schedule"] - t0 < 1.8, finished
    assert finished["schedule"] < finished["request"]


def test_reconfigure_keeps_the_balance_instead_of_refilling():
    now = [0.0]
    pacer = Pacer(10 * MiB, clock=lambda: now[0])
    stop = threading.Event()
    stop.set()                                       # never sleep in this test
    pacer.before_chunk(10 * MiB, stop)              # the bucket is empty now
    pacer.set_rate(20 * MiB)                         # a reload with a bigger budget
    assert pacer._bucket.tokens <= 0                 # no refilled burst
    assert pacer._bucket.reserve(MiB, now[0]) > 0    # the next chunk still waits
    stall = StallBound(0.02)
    stall.set_max_stall(0.05)
    assert stall.max_stall == 0.05


def test_executor_reconfigure_applies_to_the_same_pacer_and_stall():
    ex = executor(MiB)
    ex.reconfigure(budget=4 * MiB, max_stall=0.1)
    assert ex._pacer.rate == 4 * MiB and ex._stall.max_stall == 0.1
