"""Who may act next: scheduled work and requests take turns, chunk by chunk.

One executor serves the daemon's loop ("schedule") and the control socket
("request").  Holding it for a whole action let one long request starve the
loop (issue 18 item 6: a rule-matched process stayed unplaced for 70 s).
Here an action holds the turn only until its next chunk boundary: if the
other class is waiting, it hands the turn over after at least one chunk of
its own and queues again, so both classes always make progress.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from collections.abc import Iterator

SCHEDULE, REQUEST = "schedule", "request"
_OTHER = {SCHEDULE: REQUEST, REQUEST: SCHEDULE}


class Turns:
    """A lock with two classes of holders that alternate whenever both wait."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._waiting = {SCHEDULE: 0, REQUEST: 0}
        self._next: str | None = None     # the class the last holder handed the turn to

    def _may_take(self, who: str) -> bool:
        other = _OTHER[who]
        return not self._busy and not (self._next == other and self._waiting[other] > 0)

    def acquire(self, who: str) -> None:
        with self._cond:
            self._waiting[who] += 1
            try:
                self._cond.wait_for(lambda: self._may_take(who))
            finally:
                self._waiting[who] -= 1
            self._busy = True
            if self._next == who:
                self._next = None

    def release(self, who: str) -> None:
        with self._cond:
            self._busy = False
            if self._waiting[_OTHER[who]]:
                self._next = _OTHER[who]
            self._cond.notify_all()

    def other_waiting(self, who: str) -> bool:
        with self._cond:
            return self._waiting[_OTHER[who]] > 0

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
        # At least one chunk per turn, or two waiting classes would hand the
        # turn back and forth without either moving a page.
        if self._chunks and self._turns.other_waiting(self.who):
            self._turns.release(self.who)
            self._turns.acquire(self.who)
            self._chunks = 0
        self._chunks += 1


def holder_class(reason: str) -> str:
    """The executor's ``reason`` (a metrics label) -> whose turn it takes."""
    return SCHEDULE if reason in ("schedule", "auto") else REQUEST
