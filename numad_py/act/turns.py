"""Who may act next: scheduled work and each requester take turns, chunk by chunk.

One executor serves the daemon's loop ("schedule") and the control socket,
whose requests are held per uid ("uid:1000").  Holding it for a whole action
let one long request starve the loop (issue 18 item 6: a rule-matched process
stayed unplaced for 70 s), and would let one uid's stream of requests starve
another uid's.  Here an action holds the turn only until its next chunk
boundary: if another holder waits, it hands the turn over after at least one
chunk of its own and queues again behind the others, so every holder that
waits moves one chunk per round (round robin, not one class at a time).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

SCHEDULE, REQUEST = "schedule", "request"


class Turns:
    """A lock whose waiting holders (named by a key) are served round robin."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._waiting: dict[str, int] = {}   # threads waiting per holder key
        self._order: deque[str] = deque()    # each waiting key once, in turn order

    def acquire(self, who: str) -> None:
        with self._cond:
            self._waiting[who] = self._waiting.get(who, 0) + 1
            if who not in self._order:
                self._order.append(who)
            try:
                self._cond.wait_for(lambda: not self._busy and self._order[0] == who)
            except BaseException:
                self._forget(who)
                raise
            self._forget(who)
            self._busy = True

    def _forget(self, who: str) -> None:
        """One thread of ``who`` stops waiting; the key keeps a place while others of it wait."""
        self._waiting[who] -= 1
        if not self._waiting[who]:
            del self._waiting[who]
            self._order.remove(who)
        elif self._order[0] == who:
            # Another thread of the same holder waits: it queues behind the rest.
            self._order.rotate(-1)
        self._cond.notify_all()

    def release(self, who: str) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def other_waiting(self, who: str) -> bool:
        with self._cond:
            return any(key != who for key in self._order)

    @contextmanager
    def turn(self, who: str) -> Iterator[Turn]:
        self.acquire(who)
        current = Turn(self, who)
        try:
            yield current
        finally:
            self.release(who)


class Turn:
    """One holder's turn; :meth:`chunk_boundary` is called before each chunk."""

    def __init__(self, turns: Turns, who: str):
        self._turns = turns
        self.who = who
        self._chunks = 0

    def chunk_boundary(self) -> None:
        # At least one chunk per turn, or waiting holders would hand the turn
        # round without any of them moving a page.
        if self._chunks and self._turns.other_waiting(self.who):
            self._turns.release(self.who)
            self._turns.acquire(self.who)
            self._chunks = 0
        self._chunks += 1


def holder_of(reason: str, uid: int | None = None) -> str:
    """The key an action waits under: the loop's own work, or the requesting uid."""
    if reason in ("schedule", "auto"):
        return SCHEDULE
    return REQUEST if uid is None else f"uid:{uid}"
