"""The control socket's transport: one asyncio event loop, lines in, lines out.

It knows nothing of operations.  It binds the socket (mode, group, stale
socket), reads each peer's kernel credentials, admits or refuses connections
(a ``busy`` line before close), frames lines (``max_line``, ``read_timeout``)
and queues replies in a per-connection outbox where progress events are
coalesced.  Each complete line goes to ``handler(conn, line)`` on the loop.

Cost per connection: two coroutines and a buffer, never a thread.  Every
refusal is an answer: a full server, a uid over its share, a line too long,
a line left unfinished (slowloris) all get one error line before the close.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import logging
import os
import resource
import socket
import stat
import struct
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

from .. import procfs
from ..errors import InvalidArgument, NumaError
from . import protocol as P
from .auth import Peer
from .connection import Connection

log = logging.getLogger("numad_py.control")

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)   # Linux 4.13+
SUN_PATH_MAX = 107
BACKLOG = 1024          # the kernel caps it at net.core.somaxconn
FD_HEADROOM = 64        # files the daemon needs besides connections


class SocketInUse(NumaError):
    """Another live process serves the control socket path."""


class SocketPathError(NumaError):
    """The control socket path cannot be used (not a socket, too long...)."""


# --- credentials and binding ----------------------------------------------------

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
        groups = procfs.parse_status_field(procfs.read_text(pid, "status"), "Groups") or ""
        return frozenset(int(g) for g in groups.split())
    except (NumaError, ValueError):
        return frozenset()


def group_id(group: str | int | None) -> int | None:
    """A group name or number -> gid; ``""``/None -> None (root only)."""
    if group is None or group == "":
        return None
    if isinstance(group, int) or str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise InvalidArgument(f"[control] group {group!r} does not exist") from None


def _holder(path: Path) -> str | None:
    """Who serves ``path`` ("pid 12 (numad-py)"), or None when nobody listens there."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return None
    try:
        peer = peer_credentials(probe)
        try:
            comm = procfs.read_text(peer.pid, "comm").strip()
        except NumaError:
            comm = "another numad-py"
        return f"pid {peer.pid} ({comm})" if peer.pid > 0 else "another numad-py"
    except OSError:
        return "another numad-py"
    finally:
        probe.close()


def bind_socket(path_text: str, mode: int, gid: int | None) -> tuple[socket.socket, int]:
    """Listen on ``path_text``; returns the socket and the inode it created.

    Bound under a temporary name, given its mode and group, then renamed over
    the final path: never reachable with the wrong permissions.  A socket file
    nobody answers on is replaced; one a live process answers on is not.
    """
    path = Path(path_text)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    if len(os.fsencode(str(tmp))) > SUN_PATH_MAX:
        raise SocketPathError(f"control socket path {path} is too long for a Unix socket "
                              f"(at most {SUN_PATH_MAX - len(tmp.name) + len(path.name)} bytes)")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if path.is_symlink() or path.exists():
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise SocketPathError(f"{path} exists and is not a socket; not replacing it",
                                  errno=errno.EEXIST)
        holder = _holder(path)
        if holder is not None:
            raise SocketInUse(f"control socket {path} is in use by {holder}; stop it first or set "
                              "[control] socket to another path", errno=errno.EADDRINUSE)
        log.info("replacing stale control socket %s", path)
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(tmp))
        os.chmod(tmp, mode)
        if gid is not None:
            os.chown(tmp, -1, gid)
        os.rename(tmp, path)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return sock, os.lstat(path).st_ino



# --- the loop -----------------------------------------------------------------------

class Transport:
    """Accepts connections on one asyncio loop in one daemon thread.

    ``handler(conn, line)`` is awaited on the loop for each complete line.
    Admission: at most ``max_connections`` at once, ``admin_reserve`` of them
    kept for admins, at most ``max_per_uid`` for any one non-admin uid; a
    refused peer gets a ``busy`` line, then the close.
    """

    def __init__(self, socket_path: str, handler: Callable[..., Awaitable[None]], *,
                 mode: int, gid: int | None, is_admin: Callable[[Peer], bool],
                 max_connections: int, admin_reserve: int, max_per_uid: int,
                 read_timeout: float, max_line: int, on_shutdown: Callable[[], None] = lambda: None):
        self.socket_path = socket_path
        self._on_shutdown = on_shutdown
        self._handler = handler
        self.mode, self.gid = mode, gid
        self._is_admin = is_admin
        self.max_connections = _within_fd_limit(max_connections)
        self.admin_reserve = min(admin_reserve, max(0, self.max_connections - 1))
        self.max_per_uid = max_per_uid
        self.read_timeout = read_timeout
        self.max_line = max_line
        self.conns: set[Connection] = set()
        self._per_uid: dict[int, int] = {}
        self.refused_connections = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._inode: int | None = None
        self._server: asyncio.AbstractServer | None = None

    # --- lifecycle (caller's thread) ---------------------------------------------------

    def start(self) -> None:
        """Bind (errors raise here, in the caller) and serve on a new loop thread."""
        self._listener, self._inode = bind_socket(self.socket_path, self.mode, self.gid)
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_unix_server(self._accept, sock=self._listener, limit=self.max_line + 2))
            except BaseException as exc:   # reported to start()'s caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self.loop = loop
        self._thread = threading.Thread(target=run, daemon=True, name="numad-ctl-loop")
        self._thread.start()
        ready.wait()
        if failure:
            self.stop(1.0)
            raise failure[0]

    def stop(self, timeout: float) -> None:
        """Close the listener and every connection; join the loop thread; unlink our socket."""
        loop, thread = self.loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(timeout), loop).result(timeout + 1)
            except Exception:
                log.exception("control: shutting the connections down failed")
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                pass
            thread.join(timeout)
        if loop is not None and not loop.is_running():
            try:
                loop.close()
            except Exception:
                log.exception("control: closing the event loop failed")
        if self._listener is not None:
            self._listener.close()
        try:
            if self._inode is not None and os.lstat(self.socket_path).st_ino == self._inode:
                os.unlink(self.socket_path)
        except OSError:
            pass
        self._inode = None

    async def _shutdown(self, timeout: float) -> None:
        try:
            self._on_shutdown()
        except Exception:
            log.exception("control: ending the running requests failed")
        if self._server is not None:
            self._server.close()
        conns = list(self.conns)
        for conn in conns:
            conn.stopping = True
            conn.reader.feed_eof()     # ends the read loop at once
        # Each connection now waits for its running requests (cancelled by the
        # request layer before this) and flushes their replies.
        serving = [c.task for c in conns if c.task is not None and not c.task.done()]
        if serving:
            await asyncio.wait(serving, timeout=timeout / 2)
        for conn in list(self.conns):
            conn.writer.transport.abort()
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in rest:
            t.cancel()
        if rest:
            await asyncio.wait(rest, timeout=1.0)

    # --- admission (loop thread) -------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            peer = peer_credentials(sock)
        except OSError:
            writer.close()
            return
        admin = self._is_admin(peer)
        refusal = self._refusal(peer, admin)
        if refusal is not None:
            await self._refuse(writer, peer, refusal)
            return
        conn = Connection(peer, admin, reader, writer, read_timeout=self.read_timeout,
                          max_line=self.max_line)
        conn.task = asyncio.current_task()
        self.conns.add(conn)
        self._per_uid[peer.uid] = self._per_uid.get(peer.uid, 0) + 1
        try:
            await conn.serve(self._handler)
        finally:
            self.conns.discard(conn)
            left = self._per_uid.get(peer.uid, 1) - 1
            if left:
                self._per_uid[peer.uid] = left
            else:
                self._per_uid.pop(peer.uid, None)

    def _refusal(self, peer: Peer, admin: bool) -> str | None:
        active = len(self.conns)
        limit = self.max_connections if admin else self.max_connections - self.admin_reserve
        if active >= limit:
            return f"too many connections ({active} open); try again later"
        held = self._per_uid.get(peer.uid, 0)
        if not admin and held >= self.max_per_uid:
            return (f"too many connections from uid {peer.uid} ({held} open, the limit per uid is "
                    f"{self.max_per_uid}); try again later")
        return None

    async def _refuse(self, writer: asyncio.StreamWriter, peer: Peer, why: str) -> None:
        self.refused_connections += 1
        n = self.refused_connections
        if n in (1, 10, 100) or n % 1000 == 0:
            log.warning("control: refused a connection from %s: %s (%d refused so far)",
                        peer.describe(), why, n)
        try:
            writer.write(P.encode(P.error(None, "busy", why)))
            await asyncio.wait_for(writer.drain(), 0.2)
        except (TimeoutError, OSError, RuntimeError):
            pass
        finally:
            writer.close()


def _within_fd_limit(wanted: int) -> int:
    """``wanted`` connections, or fewer if RLIMIT_NOFILE would run out first (EMFILE
    at accept() leaves a client with no answer; a refused one gets ``busy``)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(8, soft - FD_HEADROOM)
    if wanted > room:
        log.warning("control: max_connections %d lowered to %d: the open-file limit is %d "
                    "(raise LimitNOFILE)", wanted, room, soft)
        return room
    return wanted
