"""The control socket server: a Unix stream socket speaking protocol.py.

Threads, bounded: one accept thread; per connection a reader and a writer;
per placement request (migrate, drain) one job thread that calls the
daemon's ``Executor`` — the executor serialises them with scheduled work and
applies the same budget and stall bound.

Robustness, so one client cannot hurt others:

* at most ``max_connections`` at once (``admin_reserve`` of them kept for
  root/admin peers); beyond that a connection gets a ``busy`` error and is
  closed, and the server keeps serving;
* a line must be complete (newline) within ``read_timeout`` of its first byte
  and be at most ``max_line`` bytes; an idle connection with nothing in
  flight is closed after ``read_timeout``;
* replies go through a per-connection writer thread, so a client that does
  not read never blocks a migration (progress events are coalesced, and a
  send that blocks ``read_timeout`` drops the connection);
* a half-closed client (shutdown(SHUT_WR)) still gets every reply;
* a client that disconnects does not cancel its request: what was accepted
  runs to the end and is audited (cancel it with ``cancel`` instead).

Peer credentials come from ``SO_PEERCRED`` (and ``SO_PEERGROUPS``), never
from the message.  Every placement-changing request, allowed or refused,
gets one line on the ``numad_py.audit`` logger.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import select
import socket
import stat
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

from ..errors import InvalidArgument, InvalidNode, NumaError, PermissionDenied, ProcessGone
from ..nodes import NodeListError, format_nodes, parse_nodes
from . import protocol as P
from .auth import Peer, authorize, is_admin

log = logging.getLogger("numad_py.control")
audit_log = logging.getLogger("numad_py.audit")

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)   # Linux 4.13+
SUN_PATH_MAX = 107


# --- what the server needs from the machine (a fake one in host tests) --------

class KernelHost:
    """Sensing for requests: process owners and identity, nodes, residency, drain."""

    def topology(self):
        from ..topology import read_topology
        return read_topology()

    def owner(self, pid: int) -> tuple[int, int]:
        """(real uid, effective uid) of ``pid``."""
        import psutil
        try:
            uids = psutil.Process(pid).uids()
        except psutil.NoSuchProcess:
            raise ProcessGone(f"process {pid} is gone", errno=errno.ESRCH) from None
        return uids.real, uids.effective

    def identity(self, pid: int) -> tuple[float, str]:
        from ..sense.identity import start_time_of
        start = start_time_of(pid)
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            raise ProcessGone(f"process {pid} is gone", errno=errno.ESRCH) from None
        return start, comm

    def target_nodes(self, spec: str) -> frozenset[int]:
        from ..numa import check_nodes
        topo = self.topology()
        nodes = parse_nodes(spec, all_nodes=topo.memory_nodes)
        return check_nodes(nodes)

    def missing_mappings(self, pid: int, names: tuple[str, ...]) -> list[str]:
        from ..sense.maps import read_maps, select_mappings
        if not names:
            return []
        maps = read_maps(pid)
        return [n for n in names if not select_mappings(maps, n)]

    def query(self, pid: int, range_text: str | None) -> dict:
        if range_text:
            from ..numa import range_residency
            from ..sense.maps import parse_range
            start, end = parse_range(range_text)
            res = range_residency(pid, start, end)
            return {"pid": pid, "range": range_text,
                    "nodes": {str(n): b for n, b in sorted(res["nodes"].items())},
                    "other": res["other"]}
        from ..sense.maps import process_residency
        nodes = process_residency(pid)
        return {"pid": pid, "nodes": {str(n): b for n, b in sorted(nodes.items())},
                "total_bytes": sum(nodes.values())}

    def drain_targets(self, node: int, to: str | None) -> list[int]:
        from .drain import resolve_targets
        topo = self.topology()
        wanted = None if to is None else parse_nodes(to, all_nodes=topo.memory_nodes - {node})
        return resolve_targets(topo, node, wanted)

    def drain(self, node: int, targets: list[int], *, move_all: bool, executor, progress,
              cancelled) -> dict:
        from .drain import drain_node
        return drain_node(node, executor=executor, topology=self.topology(), to=targets,
                          move_all=move_all, progress=progress, cancelled=cancelled,
                          exclude=()).to_dict()


# --- peer credentials ---------------------------------------------------------------

def peer_credentials(sock: socket.socket) -> Peer:
    """The connecting process's pid/uid/gid (SO_PEERCRED) and groups (SO_PEERGROUPS)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(uid=uid, gid=gid, pid=pid, groups=_peer_groups(sock, pid))


def _peer_groups(sock: socket.socket, pid: int) -> frozenset[int]:
    for count in (64, 65536):
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * count)
            return frozenset(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
        except OSError as exc:
            if exc.errno == errno.ERANGE:
                continue
            break
    # Older kernels: /proc/PID/status of the peer (racy, but only ever narrows rights).
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                return frozenset(int(g) for g in line.split()[1:])
    except OSError:
        pass
    return frozenset()


def group_id(group: str | int | None) -> int | None:
    """A group name or number -> gid; ``""``/None -> None (root only)."""
    if group in (None, ""):
        return None
    if isinstance(group, int) or str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise InvalidArgument(f"[control] group {group!r} does not exist") from None


# --- connections ------------------------------------------------------------------------

class _Outbox:
    """Messages for one connection; progress events coalesced per request id."""

    def __init__(self):
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._progress: dict[str, bytes] = {}
        self._closed = False
        self.dead = False

    def put(self, message: dict) -> None:
        data = P.encode(message)
        with self._cond:
            if self.dead or self._closed:
                return
            self._queue.append(("msg", data))
            self._cond.notify()

    def put_progress(self, request_id: str, message: dict) -> None:
        data = P.encode(message)
        with self._cond:
            if self.dead or self._closed:
                return
            if request_id not in self._progress:
                self._queue.append(("progress", request_id))
            self._progress[request_id] = data   # the latest value wins
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def get(self) -> bytes | None:
        """The next bytes to send; None when closed and drained."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            kind, item = self._queue.popleft()
            if kind == "progress":
                return self._progress.pop(item)
            return item


@dataclass
class Job:
    id: str
    op: str
    peer: Peer
    conn: _Connection
    cancel: threading.Event = field(default_factory=threading.Event)
    cancelled_by: str = ""


class _Connection:
    def __init__(self, server: ControlServer, sock: socket.socket, peer: Peer, admin: bool):
        self.server = server
        self.sock = sock
        self.peer = peer
        self.admin = admin
        self.outbox = _Outbox()
        self.jobs_lock = threading.Lock()
        self.jobs: set[str] = set()
        self.jobs_done = threading.Condition(self.jobs_lock)
        self.writer = threading.Thread(target=self._write_loop, daemon=True,
                                       name=f"numad-ctl-w{peer.pid}")

    # writer ------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            data = self.outbox.get()
            if data is None:
                return
            if self.outbox.dead:
                continue
            try:
                self.sock.sendall(data)
            except OSError:
                # Gone or not reading for read_timeout: drop what is left for it.
                self.outbox.dead = True

    def send(self, message: dict) -> None:
        self.outbox.put(message)

    # reader ---------------------------------------------------------------------
    def serve(self) -> None:
        srv = self.server
        self.writer.start()
        buf = bytearray()
        line_started: float | None = None
        last_activity = time.monotonic()
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        try:
            while not srv._stopping.is_set():
                now = time.monotonic()
                if line_started is not None and now - line_started > srv.read_timeout:
                    self.send(P.error(None, "bad_request",
                                      f"incomplete request line: no newline within {srv.read_timeout:g} s"))
                    return
                if line_started is None and not self._busy() and now - last_activity > srv.read_timeout:
                    log.debug("closing idle connection from %s", self.peer.describe())
                    return
                if not poller.poll(int(min(0.25, srv.read_timeout) * 1000)):
                    continue
                try:
                    chunk = self.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return  # reset by the peer
                if not chunk:
                    # EOF: the client half-closed or left.  A last line without a
                    # newline still counts; then every reply is still delivered.
                    if buf.strip():
                        self._handle_line(bytes(buf))
                    return
                last_activity = time.monotonic()
                buf += chunk
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line = bytes(buf[:nl])
                    del buf[: nl + 1]
                    if len(line) > srv.max_line:
                        self.send(P.error(None, "too_large",
                                          f"request line of {len(line)} bytes is over the limit of "
                                          f"{srv.max_line} bytes"))
                        return
                    if line.strip():
                        self._handle_line(line)
                if len(buf) > srv.max_line:
                    self.send(P.error(None, "too_large",
                                      f"request line longer than the limit of {srv.max_line} bytes"))
                    return
                line_started = (line_started or time.monotonic()) if buf else None
        finally:
            self._finish()

    def _busy(self) -> bool:
        with self.jobs_lock:
            return bool(self.jobs)

    def _finish(self) -> None:
        # Replies of requests in flight are still owed: wait for their jobs.
        with self.jobs_lock:
            while self.jobs:
                self.jobs_done.wait(0.5)
        self.outbox.close()
        self.writer.join(self.server.read_timeout + 1)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _handle_line(self, line: bytes) -> None:
        try:
            req = P.parse_request(line)
        except P.ProtocolError as exc:
            self.server.count("invalid", exc.code)
            self.send(P.from_error(exc))
            return
        try:
            self.server._dispatch(self, req)
            if req.op not in ASYNC_OPS:  # those are counted when their job ends
                self.server.count(req.op, "ok")
        except P.ProtocolError as exc:
            self.server.count(req.op, exc.code)
            self.send(P.from_error(exc, req.id))
        except Exception as exc:  # never let one request take the connection down
            log.exception("control request %s %s failed", req.op, req.id)
            self.server.count(req.op, "internal")
            self.send(P.error(req.id, "internal", f"internal error: {type(exc).__name__}: {exc}"))


# --- the server -----------------------------------------------------------------------------

ASYNC_OPS = ("migrate", "drain")
_RESULT_OF = {"forbidden": "denied", "bad_request": "invalid", "unknown_op": "invalid",
              "too_large": "invalid"}
_DONE = ("ok", "done", "dry-run", "cancelled", "skipped", "retry")


class ControlServer:
    """The daemon's control socket.  ``start()`` binds and serves; ``stop()`` ends it."""

    def __init__(
        self,
        socket_path: str,
        *,
        executor,                                   # Executor, or a callable returning the current one
        status: Callable[[], dict] | None = None,
        plan: Callable[[], Any] | None = None,
        reload: Callable[[], Any] | None = None,
        mode: str | int = 0o600,
        group: str | int | None = "",
        admin_group: str | int | None = None,       # defaults to ``group``
        max_connections: int = 64,
        admin_reserve: int = 4,
        read_timeout: float = 30.0,
        max_line: int = P.MAX_LINE,
        max_inflight: int = 4,                      # running requests per connection
        progress_interval: float = 0.1,
        host=None,
        on_request: Callable[[str, str], None] | None = None,   # (op, result) for the metrics
    ):
        self.socket_path = str(socket_path)
        self._executor = executor
        self._status = status
        self._plan = plan
        self._reload = reload
        self.mode = int(mode, 8) if isinstance(mode, str) else int(mode)
        self.socket_gid = group_id(group)
        self.admin_gid = group_id(admin_group) if admin_group not in (None, "") else self.socket_gid
        self.max_connections = max_connections
        self.admin_reserve = min(admin_reserve, max(0, max_connections - 1))
        self.read_timeout = read_timeout
        self.max_line = max_line
        self.max_inflight = max_inflight
        self.progress_interval = progress_interval
        self.host = host or KernelHost()
        self._on_request = on_request
        self._listener: socket.socket | None = None
        self._inode: int | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[_Connection] = set()
        self._jobs: dict[str, list[Job]] = {}
        self._threads: set[threading.Thread] = set()
        self._accept_thread: threading.Thread | None = None
        self.refused_connections = 0

    @classmethod
    def from_daemon(cls, daemon, **overrides) -> ControlServer:
        """Wire the server to a running :class:`numad_py.daemon.service.Daemon`."""
        c = daemon.config.control
        options = dict(
            executor=lambda: daemon.executor,           # rebuilt on reload: always the current one
            status=daemon.status,
            plan=daemon.plan_preview,
            reload=daemon.request_reload,
            mode=c.mode, group=c.group,
            on_request=daemon.metrics.record_request if daemon.metrics is not None else None,
        )
        options.update(overrides)
        return cls(c.socket, **options)

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> ControlServer:
        self._listener = self._bind()
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name="numad-ctl-accept")
        self._accept_thread.start()
        log.info("control socket listening on %s (mode %04o%s)", self.socket_path, self.mode,
                 f", group {self.socket_gid}" if self.socket_gid is not None else "")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._lock:
            jobs = [j for js in self._jobs.values() for j in js]
            conns = list(self._conns)
        for job in jobs:
            job.cancelled_by = "daemon stopping"
            job.cancel.set()
        if self._listener is not None:
            try:
                self._listener.close()
            except OSError:
                pass
        for conn in conns:
            try:
                conn.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in [self._accept_thread, *list(self._threads)]:
            if t is not None:
                t.join(max(0.0, deadline - time.monotonic()))
        try:
            if self._inode is not None and os.lstat(self.socket_path).st_ino == self._inode:
                os.unlink(self.socket_path)
        except OSError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _bind(self) -> socket.socket:
        path = Path(self.socket_path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        if len(os.fsencode(str(tmp))) > SUN_PATH_MAX:
            raise InvalidArgument(f"control socket path {path} is too long for a Unix socket "
                                  f"(at most {SUN_PATH_MAX - len(tmp.name) + len(path.name)} bytes)")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if path.is_symlink() or path.exists():
            st = os.lstat(path)
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError(errno.EEXIST, f"{path} exists and is not a socket; not replacing it")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(str(path))
            except OSError:
                log.info("replacing stale control socket %s", path)
            else:
                raise OSError(errno.EADDRINUSE, f"another process is serving {path}")
            finally:
                probe.close()
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Bound under a temporary name, given its mode and group, then renamed
            # over the final path: never reachable with the wrong permissions.
            sock.bind(str(tmp))
            os.chmod(tmp, self.mode)
            if self.socket_gid is not None:
                os.chown(tmp, -1, self.socket_gid)
            os.rename(tmp, path)
            sock.listen(128)
        except BaseException:
            sock.close()
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._inode = os.lstat(path).st_ino
        return sock

    # --- accepting -------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        poller = select.poll()
        poller.register(listener.fileno(), select.POLLIN)
        while not self._stopping.is_set():
            try:
                if not poller.poll(250):
                    continue
                sock, _ = listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)  # EMFILE and friends: do not spin
                continue
            try:
                self._admit(sock)
            except Exception:
                log.exception("control: accepting a connection failed")
                sock.close()

    def _admit(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        peer = peer_credentials(sock)
        admin = is_admin(peer, self.admin_gid)
        with self._lock:
            active = len(self._conns)
            limit = self.max_connections if admin else self.max_connections - self.admin_reserve
            full = active >= limit
            if not full:
                conn = _Connection(self, sock, peer, admin)
                self._conns.add(conn)
        if full:
            self.refused_connections += 1
            if self.refused_connections in (1, 10, 100) or self.refused_connections % 1000 == 0:
                log.warning("control: refused a connection from %s: %d connection(s) open "
                            "(%d refused so far)", peer.describe(), active, self.refused_connections)
            try:
                sock.settimeout(0.2)
                sock.sendall(P.encode(P.error(None, "busy", f"too many connections ({active} open); "
                                                            "try again later")))
            except OSError:
                pass
            sock.close()
            return
        # SO_SNDTIMEO: a client that never reads makes sendall fail instead of hang.
        tv = struct.pack("ll", int(self.read_timeout), int(self.read_timeout % 1 * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        t = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name=f"numad-ctl-r{peer.pid}")
        with self._lock:
            self._threads.add(t)
        t.start()

    def _serve(self, conn: _Connection) -> None:
        try:
            conn.serve()
        finally:
            with self._lock:
                self._conns.discard(conn)
                self._threads.discard(threading.current_thread())

    # --- requests ---------------------------------------------------------------------------

    def executor(self):
        ex = self._executor
        return ex if hasattr(ex, "execute") else ex()

    def count(self, op: str, outcome: str) -> None:
        """Report one finished request as (op, ok|denied|invalid|error)."""
        if self._on_request is not None:
            self._on_request(op, _RESULT_OF.get(outcome, "ok" if outcome in _DONE else "error"))

    def _dispatch(self, conn: _Connection, req) -> None:
        op = req.op
        if op == "status":
            conn.send(P.ok(req.id, self._call(self._status, "status")))
        elif op == "plan":
            data = self._call(self._plan, "plan")
            conn.send(P.ok(req.id, data if isinstance(data, dict) else {"actions": data}))
        elif op == "reload":
            decision = authorize(conn.peer, op, admin_gid=self.admin_gid)
            if not decision:
                self._audit(conn.peer, req, "forbidden", decision.reason)
                raise P.ProtocolError("forbidden", decision.reason)
            self._call(self._reload, "reload")
            self._audit(conn.peer, req, "requested")
            conn.send(P.ok(req.id, {"reload": "requested"}))
        elif op == "cancel":
            conn.send(P.ok(req.id, self._cancel(conn, req.request)))
        elif op == "query":
            self._authorize_target(conn, req, req.pid, audit=False)
            conn.send(P.ok(req.id, self._sensing(lambda: self.host.query(req.pid, req.range))))
        elif op == "migrate":
            self._start_migrate(conn, req)
        elif op == "drain":
            self._start_drain(conn, req)
        else:  # parse_request only lets known ops through
            raise P.ProtocolError("unknown_op", f"unknown operation {op!r}")

    def _call(self, fn, what: str):
        if fn is None:
            raise P.ProtocolError("internal", f"{what} is not available in this daemon")
        return fn() or {}

    def _sensing(self, fn):
        """Run a sensing call; package errors become protocol errors."""
        try:
            return fn()
        except ProcessGone as exc:
            raise P.ProtocolError("gone", str(exc)) from None
        except PermissionDenied as exc:
            raise P.ProtocolError("forbidden", f"the daemon itself lacks a privilege: {exc}") from None
        except (InvalidNode, InvalidArgument, NodeListError) as exc:
            raise P.ProtocolError("bad_request", str(exc)) from None
        except NumaError as exc:
            raise P.ProtocolError("internal", str(exc)) from None

    def _authorize_target(self, conn: _Connection, req, pid: int, *, audit: bool = True,
                          move_all: bool = False) -> None:
        try:
            uids = self.host.owner(pid)
        except ProcessGone as exc:
            if audit:
                self._audit(conn.peer, req, "gone", str(exc))
            raise P.ProtocolError("gone", str(exc)) from None
        decision = authorize(conn.peer, req.op, target_uids=uids, target_pid=pid,
                             move_all=move_all, admin_gid=self.admin_gid)
        if not decision:
            if audit:
                self._audit(conn.peer, req, "forbidden", decision.reason)
            raise P.ProtocolError("forbidden", decision.reason)

    def _check_capacity(self, conn: _Connection, req) -> None:
        with conn.jobs_lock:
            if len(conn.jobs) >= self.max_inflight:
                raise P.ProtocolError("busy", f"{len(conn.jobs)} requests already running on this "
                                              f"connection (limit {self.max_inflight})")
        with self._lock:
            for job in self._jobs.get(req.id, ()):
                if job.peer.uid == conn.peer.uid:
                    raise P.ProtocolError("bad_request", f"a request with id {req.id!r} is already "
                                                         "running; use a new id for each request")

    def _start_migrate(self, conn: _Connection, req) -> None:
        self._check_capacity(conn, req)
        self._authorize_target(conn, req, req.pid, move_all=req.move_all)
        try:
            target = self._sensing(lambda: self.host.target_nodes(req.to))
            missing = self._sensing(lambda: self.host.missing_mappings(req.pid, tuple(req.mapping or ())))
            if missing:
                raise P.ProtocolError("not_found", f"process {req.pid} has no mapping "
                                      f"{', '.join(repr(m) for m in missing)} (use [heap], [stack], "
                                      "anon, or a path from /proc/PID/maps)")
            start_time, comm = self._sensing(lambda: self.host.identity(req.pid))
        except P.ProtocolError as exc:
            self._audit(conn.peer, req, exc.code, exc.message)
            raise
        from .drain import make_action
        action = make_action(pid=req.pid, start_time=start_time, comm=comm,
                             rule=f"request:uid{conn.peer.uid}", target=target, memory=req.memory,
                             move_all=req.move_all, reason=f"request {req.id} from {conn.peer.describe()}")
        owner_check = None if conn.admin else (req.pid, self.host.owner(req.pid))

        def work(job: Job, progress, cancelled):
            if owner_check is not None:
                base_cancelled = cancelled

                def cancelled() -> bool:
                    if base_cancelled():
                        return True
                    try:
                        changed = self.host.owner(owner_check[0]) != owner_check[1]
                    except NumaError:
                        return False  # gone: the executor says so itself
                    if changed:
                        job.cancelled_by = "the target's uid changed"
                        job.cancel.set()
                    return changed

            outcome = self.executor().execute(action, reason="request", progress=progress,
                                              cancelled=cancelled)
            return _outcome_reply(outcome)

        self._run_job(conn, req, work, target_text=f"pid={req.pid} to={format_nodes(target)} "
                                                   f"memory={_memory_text(req.memory)}")

    def _start_drain(self, conn: _Connection, req) -> None:
        self._check_capacity(conn, req)
        decision = authorize(conn.peer, "drain", admin_gid=self.admin_gid)
        if not decision:
            self._audit(conn.peer, req, "forbidden", decision.reason)
            raise P.ProtocolError("forbidden", decision.reason)
        try:
            targets = self._sensing(lambda: self.host.drain_targets(req.node, req.to))
        except P.ProtocolError as exc:
            self._audit(conn.peer, req, exc.code, exc.message)
            raise

        def work(job: Job, progress, cancelled):
            result = self.host.drain(req.node, targets, move_all=req.move_all,
                                     executor=self.executor(), progress=progress, cancelled=cancelled)
            status = "cancelled" if result.get("cancelled") else "done"
            return status, P.ok(req.id, dict(result, status=status))

        self._run_job(conn, req, work, target_text=f"node={req.node} to={format_nodes(targets)}")

    def _run_job(self, conn: _Connection, req, work, *, target_text: str) -> None:
        job = Job(id=req.id, op=req.op, peer=conn.peer, conn=conn)
        with self._lock:
            self._jobs.setdefault(req.id, []).append(job)
        with conn.jobs_lock:
            conn.jobs.add(req.id)
        want_progress = getattr(req, "progress", True)
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if not want_progress:
                return
            now = time.monotonic()
            if done < total and now - last[0] < self.progress_interval:
                return
            last[0] = now
            conn.outbox.put_progress(req.id, P.progress(req.id, done, total))

        def cancelled() -> bool:
            return job.cancel.is_set()

        def run() -> None:
            status, reply, detail = "internal", None, ""
            try:
                status, reply = work(job, progress, cancelled)
                reply["id"] = req.id
                detail = _reply_detail(reply)
                if job.cancel.is_set() and job.cancelled_by:
                    detail += f' cancelled_by="{job.cancelled_by}"'
            except P.ProtocolError as exc:
                status, reply, detail = exc.code, P.from_error(exc, req.id), exc.message
            except Exception as exc:
                log.exception("control %s %s failed", req.op, req.id)
                status = "internal"
                reply = P.error(req.id, "internal", f"internal error: {type(exc).__name__}: {exc}")
                detail = str(exc)
            finally:
                self.count(req.op, status)
                self._audit(conn.peer, req, status, detail, target_text=target_text)
                with self._lock:
                    jobs = self._jobs.get(req.id, [])
                    if job in jobs:
                        jobs.remove(job)
                    if not jobs:
                        self._jobs.pop(req.id, None)
                if reply is not None:
                    conn.send(reply)
                with conn.jobs_lock:
                    conn.jobs.discard(req.id)
                    conn.jobs_done.notify_all()
                with self._lock:
                    self._threads.discard(threading.current_thread())

        t = threading.Thread(target=run, daemon=True, name=f"numad-ctl-{req.op}")
        with self._lock:
            self._threads.add(t)
        t.start()

    def _cancel(self, conn: _Connection, request_id: str) -> dict:
        with self._lock:
            jobs = [j for j in self._jobs.get(request_id, ())
                    if conn.admin or j.peer.uid == conn.peer.uid]
        if not jobs:
            raise P.ProtocolError("not_found", f"no running request with id {request_id!r}"
                                  + ("" if conn.admin else f" of uid {conn.peer.uid}"))
        for job in jobs:
            job.cancelled_by = f"cancel from {conn.peer.describe()}"
            job.cancel.set()
        return {"request": request_id, "cancelling": len(jobs)}

    # --- audit -----------------------------------------------------------------------------

    def _audit(self, peer: Peer, req, result: str, detail: str = "", *, target_text: str = "") -> None:
        if not target_text:
            if req.op == "migrate":
                target_text = f"pid={req.pid} to={req.to} memory={_memory_text(req.memory)}"
            elif req.op == "drain":
                target_text = f"node={req.node} to={req.to or 'default'}"
        move_all = " move_all=true" if getattr(req, "move_all", False) else ""
        detail = detail.replace("\n", " ").replace('"', "'").strip()
        if detail and result in P.ERROR_CODES:
            detail = f'reason="{detail}"'
        audit_log.info("peer_uid=%d peer_pid=%d op=%s id=%s %s%s result=%s%s", peer.uid, peer.pid,
                       req.op, req.id, target_text, move_all, result, f" {detail}" if detail else "")


def _memory_text(memory) -> str:
    text = memory if isinstance(memory, str) else ",".join(memory)
    return text if len(text) <= 200 else text[:200] + "..."


def _outcome_reply(outcome) -> tuple[str, dict]:
    """Executor outcome -> (audit result, reply).  Once the executor ran, the reply is ``ok``
    and ``result.status`` says how it went; a process that vanished is the ``gone`` error."""
    data = outcome.to_dict()
    if outcome.status == "gone":
        return "gone", P.error(None, "gone", outcome.message or f"process {outcome.pid} is gone")
    return outcome.status, P.ok(None, data)


def _reply_detail(reply: dict) -> str:
    if not reply.get("ok"):
        return reply["error"]["message"]
    r = reply["result"]
    inner = r.get("result", r)
    parts = []
    if "bytes_moved" in inner:
        parts.append(f"bytes_moved={inner['bytes_moved']}")
    failed = inner.get("pages_failed")
    if failed:
        parts.append("failed=" + ",".join(f"{k}:{v}" for k, v in sorted(failed.items())))
    if r.get("message"):
        parts.append(f"message={r['message']!r}")
    return " ".join(parts)
