"""Running placement requests: the table, cancel, progress, and the per-chunk guard.

The table is touched on the event loop only; the worker thread running a
job reads ``Job.cancel`` (a ``threading.Event``) and calls the job's
``cancelled()`` between chunks.  For a migrate that callable also re-reads
the target's credentials and ends the job when the process changed hands
(pid reuse) or changed credentials (setuid exec, uid change, non-dumpable):
the authorization given at the start holds for at most one more chunk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import NumaError, ProcessGone
from . import protocol as P
from .auth import Peer
from .credentials import Credentials
from .connection import Connection


@dataclass
class Job:
    id: str
    op: str
    peer: Peer
    conn: Connection
    cancel: threading.Event = field(default_factory=threading.Event)
    cancelled_by: str = ""
    ended_by: str = ""          # "gone" / "forbidden": the guard ended it, and why in cancelled_by

    def stop(self, why: str, code: str = "") -> None:
        if not self.cancel.is_set():
            self.cancelled_by = why
            self.ended_by = code
        self.cancel.set()

    def stopped(self) -> bool:
        """Checked between chunks: a cancel, or the client gone (a request never outlives its
        client by more than one chunk; a half-closed client still waits for its reply)."""
        if not self.cancel.is_set() and self.conn.client_gone():
            self.stop("the client went away")
        return self.cancel.is_set()


class JobTable:
    """Jobs by request id (ids are per uid: two uids may both use "r1")."""

    def __init__(self) -> None:
        self._jobs: dict[str, list[Job]] = {}

    def running(self, request_id: str) -> list[Job]:
        return list(self._jobs.get(request_id, ()))

    def all(self) -> list[Job]:
        return [j for jobs in self._jobs.values() for j in jobs]

    def on_connection(self, conn: Connection) -> int:
        return sum(1 for j in self.all() if j.conn is conn)

    def add(self, job: Job) -> None:
        self._jobs.setdefault(job.id, []).append(job)

    def remove(self, job: Job) -> None:
        jobs = self._jobs.get(job.id, [])
        if job in jobs:
            jobs.remove(job)
        if not jobs:
            self._jobs.pop(job.id, None)

    def check_capacity(self, conn: Connection, request_id: str, max_inflight: int) -> None:
        """ProtocolError(busy / bad_request) if this request may not start now."""
        running = self.on_connection(conn)
        if running >= max_inflight:
            raise P.ProtocolError("busy", f"{running} requests already running on this "
                                          f"connection (limit {max_inflight})")
        if any(j.peer.uid == conn.peer.uid for j in self._jobs.get(request_id, ())):
            raise P.ProtocolError("bad_request", f"a request with id {request_id!r} is already "
                                                 "running; use a new id for each request")

    def cancel(self, conn: Connection, request_id: str) -> dict:
        jobs = [j for j in self.running(request_id) if conn.admin or j.peer.uid == conn.peer.uid]
        if not jobs:
            raise P.ProtocolError("not_found", f"no running request with id {request_id!r}"
                                  + ("" if conn.admin else f" of uid {conn.peer.uid}"))
        for job in jobs:
            job.stop(f"cancel from {conn.peer.describe()}")
        return {"request": request_id, "cancelling": len(jobs)}


def progress_sender(job: Job, interval: float, enabled: bool) -> Callable[[int, int], None]:
    """``progress(done, total)`` for the executor: throttled, coalesced in the outbox."""
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if not enabled:
            return
        now = time.monotonic()
        if done < total and now - last[0] < interval:
            return
        last[0] = now
        job.conn.progress_threadsafe(job.id, P.progress(job.id, done, total))

    return progress


def credential_change(before: Credentials, now: Credentials, *,
                      admin: bool) -> tuple[str, str] | None:
    """(code, why) when ``now`` is not the process ``before`` authorized, else None."""
    if abs(now.start_time - before.start_time) > 0.005:
        return "gone", f"process {before.pid} exited and its pid was reused"
    if admin:
        return None
    if now.uids != before.uids:
        return "forbidden", (f"process {before.pid} changed credentials during the request "
                             f"(uids {_uids(before.uids)} -> {_uids(now.uids)})")
    if before.dumpable and not now.dumpable:
        return "forbidden", (f"process {before.pid} became non-dumpable during the request "
                             "(it ran a setuid or privileged program)")
    return None


def guarded(job: Job, before: Credentials, read: Callable[[int], Credentials],
            *, admin: bool) -> Callable[[], bool]:
    """The executor's per-chunk ``cancelled()``: a cancel, or the target no longer the same."""

    def cancelled() -> bool:
        if job.stopped():
            return True
        try:
            change = credential_change(before, read(before.pid), admin=admin)
        except ProcessGone:
            change = ("gone", f"process {before.pid} is gone")
        except NumaError as exc:     # cannot tell any more: stop rather than act blind
            change = ("forbidden", f"cannot re-check process {before.pid}: {exc}")
        if change is None:
            return False
        job.stop(change[1], change[0])
        return True

    return cancelled


def _uids(uids: tuple[int, int, int]) -> str:
    return "/".join(str(u) for u in uids)
