"""The request layer: parse, authorize, dispatch, run jobs, audit.

Runs on the transport's event loop.  Anything that reads /proc or moves
pages runs in the server's small worker pool (``off_loop``), never on the
loop and never on a thread of its own, and sensing one call at a time (see
``off_loop``); ``status`` and ``cancel`` answer on the loop, so they answer
while every worker is busy.  At most
``job_workers`` workers run placement jobs at once (the executor serialises
them anyway), so sensing always has a worker left.

Audit: every allowed placement request (migrate, drain, reload) gets one
line when it ends, and every refused migrate/drain/reload/query gets one
line — malformed, forbidden, busy or gone alike — with every field quoted.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor as Pool
from dataclasses import replace
from typing import Any

from ..decide.advise import ReservationBook, advise
from ..errors import InvalidArgument, InvalidNode, NumaError, PermissionDenied, ProcessGone
from ..nodes import NodeListError, format_nodes
from . import audit
from . import protocol as P
from .auth import authorize
from .connection import Connection
from .drain import make_action
from .host import QueryTooLarge
from .jobs import Job, JobTable, guarded, progress_sender

log = logging.getLogger("numad_py.control")

AUDITED = frozenset({"migrate", "drain", "reload", "query"})
_RESULT_OF = {"forbidden": "denied", "bad_request": "invalid", "unknown_op": "invalid",
              "too_large": "invalid"}
_DONE = ("ok", "done", "dry-run", "cancelled", "skipped", "retry", "requested")


class ClientGone(Exception):
    """The client left while its request ran; nobody is waiting for the answer."""


class Requests:
    def __init__(self, *, executor, status: Callable[[], Any] | None, plan: Callable[[], Any] | None,
                 reload: Callable[[], Any] | None, host, admin_gid: int | None, max_inflight: int,
                 progress_interval: float, on_request: Callable[[str, str], None] | None,
                 pool: Pool, job_workers: int):
        self._executor = executor
        self._status, self._plan, self._reload = status, plan, reload
        self.host = host
        self.admin_gid = admin_gid
        self.max_inflight = max_inflight
        self.progress_interval = progress_interval
        self._on_request = on_request
        self._pool = pool
        # asyncio primitives bind to the loop at first use (Python >= 3.10), not here.
        self._job_slots = asyncio.Semaphore(job_workers)
        self._sense_slot = asyncio.Semaphore(1)
        self.jobs = JobTable()
        self.reservations = ReservationBook()   # touched on the loop only
        self.stopping = threading.Event()

    def executor(self):
        ex = self._executor
        return ex if hasattr(ex, "execute") else ex()

    def count(self, op: str, outcome: str) -> None:
        """Report one finished request as (op, ok|denied|invalid|error)."""
        if self._on_request is not None:
            self._on_request(op, _RESULT_OF.get(outcome, "ok" if outcome in _DONE else "error"))

    def stop_all(self) -> None:
        """On the loop, when the server stops: end every job at its next chunk."""
        self.stopping.set()
        for job in self.jobs.all():
            job.stop("daemon stopping")

    async def _advise(self, conn: Connection, req) -> dict:
        """Advice from a fresh node snapshot (sensed off the loop) minus what recent advice
        reserved.  Only an admin's advice reserves: libvirt asks as root, and a user's
        requests must not steer where root's VMs go."""
        snapshot = await self.off_loop(self.host.node_snapshot)
        now = time.monotonic()
        result = advise(snapshot, cpus=req.cpus, memory=req.memory, reserved=self.reservations.active(now))
        reserved = bool(req.reserve and conn.admin and result.nodes)
        if reserved:
            self.reservations.add(result.nodes, req.cpus, req.memory, now)
        return result.to_dict() | {"nodelist": format_nodes(result.nodes), "cpus": req.cpus,
                                   "memory_bytes": req.memory,
                                   "reserved_seconds": self.reservations.ttl if reserved else 0}

    # --- one line ------------------------------------------------------------------

    async def handle(self, conn: Connection, line: bytes) -> None:
        try:
            req = P.parse_request(line)
        except P.ProtocolError as exc:
            self.count(exc.op or "invalid", exc.code)
            if exc.op in AUDITED:
                self._audit(conn, exc.op, exc.request_id, None, exc.code, {"reason": exc.message})
            conn.send(P.from_error(exc))
            return
        try:
            await self._dispatch(conn, req)
        except ClientGone:
            self.count(req.op, "cancelled")
        except P.ProtocolError as exc:
            self.count(req.op, exc.code)
            if req.op in AUDITED:
                self._audit(conn, req.op, req.id, req, exc.code, {"reason": exc.message})
            conn.send(P.from_error(exc, req.id))
        except Exception as exc:  # never let one request take the connection down
            log.exception("control request %s %s failed", req.op, req.id)
            self.count(req.op, "internal")
            if req.op in AUDITED:
                self._audit(conn, req.op, req.id, req, "internal", {"reason": str(exc)})
            conn.send(P.error(req.id, "internal", f"internal error: {type(exc).__name__}: {exc}"))

    async def _dispatch(self, conn: Connection, req) -> None:
        op = req.op
        if op == "status":
            conn.send(P.ok(req.id, _call(self._status, "status")))
        elif op == "plan":
            data = await self.off_loop(lambda: _call(self._plan, "plan"))
            conn.send(P.ok(req.id, data if isinstance(data, dict) else {"actions": data}))
        elif op == "reload":
            self._require(conn, "reload")
            _call(self._reload, "reload")
            self._audit(conn, op, req.id, req, "requested", {})
            conn.send(P.ok(req.id, {"reload": "requested"}))
        elif op == "cancel":
            conn.send(P.ok(req.id, self.jobs.cancel(conn, req.request)))
        elif op == "advise":
            conn.send(P.ok(req.id, await self._advise(conn, req)))
        elif op == "query":
            await self._query(conn, req)
            self.count(op, "ok")
            return
        elif op == "migrate":
            await self._start_migrate(conn, req)
            return      # counted when the job ends
        elif op == "drain":
            await self._start_drain(conn, req)
            return
        else:  # parse_request only lets known ops through
            raise P.ProtocolError("unknown_op", f"unknown operation {op!r}")
        self.count(op, "ok")

    async def off_loop(self, fn: Callable[[], Any]) -> Any:
        """Run blocking sensing in the pool, one call at a time; package errors become
        protocol errors.

        One at a time: sensing is mostly Python parsing /proc under the GIL, so
        a second worker adds no throughput, only another thread the loop must
        win the GIL back from after each of its send/recv calls.  Under 200
        active clients in the 2-node guest, ``status`` took 3.9 s (median)
        with four sensing at once and 32 ms with one.
        """
        try:
            async with self._sense_slot:
                return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        except InterruptedError:
            raise ClientGone() from None
        except ProcessGone as exc:
            raise P.ProtocolError("gone", str(exc)) from None
        except PermissionDenied as exc:
            raise P.ProtocolError("forbidden", f"the daemon itself lacks a privilege: {exc}") from None
        except QueryTooLarge as exc:
            raise P.ProtocolError("too_large", str(exc)) from None
        except (InvalidNode, InvalidArgument, NodeListError) as exc:
            raise P.ProtocolError("bad_request", str(exc)) from None
        except NumaError as exc:
            raise P.ProtocolError("internal", str(exc)) from None

    def _require(self, conn: Connection, op: str, **target) -> None:
        decision = authorize(conn.peer, op, admin_gid=self.admin_gid, **target)
        if not decision:
            raise P.ProtocolError("forbidden", decision.reason)

    # --- requests that read or act ---------------------------------------------------

    async def _query(self, conn: Connection, req) -> None:
        creds = await self.off_loop(lambda: self.host.credentials(req.pid))
        self._require(conn, "query", target_uids=creds.uids, target_pid=req.pid,
                      dumpable=creds.dumpable)

        def gone() -> bool:
            return self.stopping.is_set() or conn.client_gone()

        def query() -> dict:
            if gone():      # queued behind other work while its client left: skip it
                raise InterruptedError("the client went away")
            return self.host.query(req.pid, req.range, gone)

        conn.send(P.ok(req.id, await self.off_loop(query)))

    async def _start_migrate(self, conn: Connection, req) -> None:
        self.jobs.check_capacity(conn, req.id, self.max_inflight)
        target = await self.off_loop(lambda: self.host.target_nodes(req.target_text))
        # Identity and owner in ONE snapshot; the job re-reads it before every chunk.
        creds = await self.off_loop(lambda: self.host.credentials(req.pid))
        self._require(conn, "migrate", target_uids=creds.uids, target_pid=req.pid,
                      move_all=req.move_all, dumpable=creds.dumpable)
        missing = await self.off_loop(lambda: self.host.missing_mappings(req.pid, tuple(req.mapping or ())))
        if missing:
            raise P.ProtocolError("not_found", f"process {req.pid} has no mapping "
                                  f"{', '.join(repr(m) for m in missing)} (use [heap], [stack], "
                                  "anon, or a path from /proc/PID/maps)")
        action = make_action(pid=req.pid, start_time=creds.start_time, comm=creds.comm,
                             rule=f"request:uid{conn.peer.uid}", target=target, memory=req.memory,
                             move_all=req.move_all, reason=f"request {req.id} from {conn.peer.describe()}")
        action = replace(action, weights=req.weights)   # interleave policy: page i to its node
        job = self._new_job(conn, req)
        cancelled = guarded(job, creds, self.host.credentials, admin=conn.admin)
        progress = progress_sender(job, self.progress_interval, req.progress)

        def work() -> tuple[str, dict]:
            outcome = self.executor().execute(action, reason="request", uid=conn.peer.uid,
                                              progress=progress, cancelled=cancelled)
            if outcome.status == "gone":
                return "gone", P.error(None, "gone", outcome.message or f"process {req.pid} is gone")
            return outcome.status, P.ok(None, outcome.to_dict())

        conn.spawn(self._run_job(conn, req, job, work, {"to": format_nodes(target)}))

    async def _start_drain(self, conn: Connection, req) -> None:
        self.jobs.check_capacity(conn, req.id, self.max_inflight)
        self._require(conn, "drain")
        targets = await self.off_loop(lambda: self.host.drain_targets(req.node, req.to))
        job = self._new_job(conn, req)
        progress = progress_sender(job, self.progress_interval, req.progress)

        def work() -> tuple[str, dict]:
            result = self.host.drain(req.node, targets, move_all=req.move_all, executor=self.executor(),
                                     progress=progress, cancelled=job.stopped)
            status = "cancelled" if result.get("cancelled") else "done"
            return status, P.ok(None, dict(result, status=status))

        conn.spawn(self._run_job(conn, req, job, work, {"to": format_nodes(targets)}))

    def _new_job(self, conn: Connection, req) -> Job:
        # Checked again: another connection of this uid may have taken the id meanwhile.
        self.jobs.check_capacity(conn, req.id, self.max_inflight)
        job = Job(id=req.id, op=req.op, peer=conn.peer, conn=conn)
        self.jobs.add(job)
        if self.stopping.is_set():
            job.stop("daemon stopping")
        return job

    async def _run_job(self, conn: Connection, req, job: Job, work, target: dict) -> None:
        status, detail = "internal", {}
        reply: dict = P.error(req.id, "internal", "internal error")
        try:
            async with self._job_slots:
                status, reply = await asyncio.get_running_loop().run_in_executor(self._pool, work)
            detail = _reply_detail(reply)
            if job.cancel.is_set() and job.cancelled_by:
                detail["cancelled_by"] = job.cancelled_by
            if job.ended_by:          # the guard ended it: the target changed or left
                status = job.ended_by
                reply = P.error(None, job.ended_by, f"{job.cancelled_by}; stopped after "
                                f"{_moved(reply)} bytes")
        except ProcessGone as exc:
            status, reply, detail = "gone", P.error(None, "gone", str(exc)), {"reason": str(exc)}
        except Exception as exc:
            log.exception("control %s %s failed", req.op, req.id)
            reply = P.error(None, "internal", f"internal error: {type(exc).__name__}: {exc}")
            detail = {"reason": str(exc)}
        finally:
            self.jobs.remove(job)
            self.count(req.op, status)
            self._audit(conn, req.op, req.id, req, status, detail, target)
            reply["id"] = req.id
            conn.send(reply)

    # --- audit -----------------------------------------------------------------------

    def _audit(self, conn: Connection, op: str, request_id: str | None, req, result: str,
               detail: dict, target: dict | None = None) -> None:
        fields: dict[str, object] = {"peer_uid": conn.peer.uid, "peer_pid": conn.peer.pid,
                                     "op": op, "id": request_id if request_id is not None else ""}
        if req is not None and op in ("migrate", "query"):
            fields["pid"] = req.pid
        if req is not None and op == "drain":
            fields["node"] = req.node
        if req is not None and op in ("migrate", "drain"):
            fields["to"] = (target or {}).get("to") or req.to or "default"
        if req is not None and op == "migrate":
            memory = req.memory
            fields["memory"] = memory if isinstance(memory, str) else ",".join(memory)
        if req is not None and op == "query" and req.range:
            fields["range"] = req.range
        if getattr(req, "move_all", False):
            fields["move_all"] = "true"
        fields["result"] = result
        fields.update(detail)
        audit.record(fields)


def _call(fn: Callable[[], Any] | None, what: str) -> Any:
    if fn is None:
        raise P.ProtocolError("internal", f"{what} is not available in this daemon")
    return fn() or {}


def _moved(reply: dict) -> int:
    r = reply.get("result") or {}
    return int((r.get("result") or r).get("bytes_moved", 0) or 0)


def _reply_detail(reply: dict) -> dict:
    if not reply.get("ok"):
        return {"reason": reply["error"]["message"]}
    r = reply["result"]
    inner = r.get("result", r)
    out: dict[str, object] = {}
    if "bytes_moved" in inner:
        out["bytes_moved"] = int(inner["bytes_moved"])
    failed = inner.get("pages_failed")
    if failed:
        out["failed"] = ",".join(f"{k}:{v}" for k, v in sorted(failed.items()))
    if r.get("message"):
        out["message"] = r["message"]
    return out
