"""The daemon's control socket: a Unix stream socket speaking protocol.py.

A fixed number of threads whatever the load: one event loop thread
(transport.py: accept, framing, outboxes, the request layer) and a small
worker pool (``workers``, 4 by default) for what blocks — /proc sensing and
migrations through the daemon's one ``Executor``, which serialises them with
scheduled work under the same budget and stall bound.  A connection costs
two coroutines and a buffer.

Robustness, so one client cannot hurt others:

* at most ``max_connections`` at once (``admin_reserve`` of them kept for
  root/admin peers, at most ``max_per_uid`` for one non-admin uid); beyond
  that a connection gets a ``busy`` error line and is closed;
* a line must be complete within ``read_timeout`` of its first byte and be at
  most ``max_line`` bytes; a connection with nothing in flight is closed after
  ``read_timeout`` without a request, partial data or not;
* replies go through a per-connection outbox (progress events coalesced), so
  a client that does not read never blocks a migration;
* a query, migrate or drain stops between chunks when its client goes (a
  half-closed client still gets its reply); the stop is audited.

Peer credentials come from ``SO_PEERCRED`` (and ``SO_PEERGROUPS``), never
from the message.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor as PoolBase
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import protocol as P
from .auth import is_admin
from .host import KernelHost
from .requests import Requests
from .transport import SocketInUse, SocketPathError, Transport, group_id, peer_credentials

__all__ = ["ControlServer", "KernelHost", "SocketInUse", "SocketPathError", "peer_credentials"]

log = logging.getLogger("numad_py.control")

WORKERS = 4            # threads for blocking work; jobs may hold at most JOB_WORKERS of them
JOB_WORKERS = 2
SWITCH_INTERVAL = 0.001   # seconds; see start()


class ControlServer:
    """``start()`` binds and serves; ``stop()`` ends it (and never raises)."""

    def __init__(
        self,
        socket_path: str,
        *,
        executor,                                   # the Executor (or a callable returning it)
        status: Callable[[], dict] | None = None,
        plan: Callable[[], Any] | None = None,
        reload: Callable[[], Any] | None = None,
        mode: str | int = 0o600,
        group: str | int | None = "",
        admin_group: str | int | None = None,       # defaults to ``group``
        max_connections: int = 2048,
        admin_reserve: int = 16,
        max_per_uid: int | None = None,             # default: a quarter of the non-admin slots
        read_timeout: float = 30.0,
        max_line: int = P.MAX_LINE,
        max_inflight: int = 4,                      # running requests per connection
        progress_interval: float = 0.1,
        host=None,
        on_request: Callable[[str, str], None] | None = None,   # (op, result) for the metrics
        workers: int = WORKERS,
    ):
        self.socket_path = str(socket_path)
        self.mode = int(mode, 8) if isinstance(mode, str) else int(mode)
        self.socket_gid = group_id(group)
        self.admin_gid = group_id(admin_group) if admin_group not in (None, "") else self.socket_gid
        self.host = host or KernelHost()
        self.workers = max(2, workers)
        self._pool: ThreadPoolExecutor | None = None
        self.requests = Requests(executor=executor, status=status, plan=plan, reload=reload,
                                 host=self.host, admin_gid=self.admin_gid, max_inflight=max_inflight,
                                 progress_interval=progress_interval, on_request=on_request,
                                 pool=_LazyPool(self), job_workers=min(JOB_WORKERS, self.workers - 1))
        open_slots = max(1, max_connections - admin_reserve)
        self.transport = Transport(
            self.socket_path, self.requests.handle, mode=self.mode, gid=self.socket_gid,
            is_admin=lambda peer: is_admin(peer, self.admin_gid),
            max_connections=max_connections, admin_reserve=admin_reserve,
            max_per_uid=max_per_uid or max(1, open_slots // 4),
            read_timeout=read_timeout, max_line=max_line, on_shutdown=self.requests.stop_all)
        self.read_timeout = read_timeout
        self.max_line = max_line
        self.max_inflight = max_inflight
        self.progress_interval = progress_interval

    @property
    def refused_connections(self) -> int:
        return self.transport.refused_connections

    @property
    def max_connections(self) -> int:
        return self.transport.max_connections

    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="numad-ctl-work")
        return self._pool

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> ControlServer:
        """Bind and serve; SocketInUse / SocketPathError / OSError if the path cannot be used."""
        # The loop thread gives up the GIL at every send/recv and then waits up to one switch
        # interval for a worker parsing /proc in Python (the convoy effect); with hundreds of
        # requests queued on the loop, 5 ms (the default) per syscall adds up to seconds.
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        self.transport.start()
        log.info("control socket listening on %s (mode %04o%s, at most %d connections)",
                 self.socket_path, self.mode,
                 f", group {self.socket_gid}" if self.socket_gid is not None else "",
                 self.transport.max_connections)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End every job at its next chunk, close every connection and the listener,
        unlink the socket this server created.  Never raises (runs in the daemon's finally)."""
        deadline = time.monotonic() + timeout
        try:
            self.transport.stop(timeout)
        except Exception:
            log.exception("control: stopping the transport failed")
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                self.requests.stopping.set()
                threads = list(getattr(pool, "_threads", ()))
                pool.shutdown(wait=False, cancel_futures=True)
                for t in threads:
                    t.join(max(0.0, deadline - time.monotonic()))
                    if t.is_alive():
                        log.warning("control: worker %s still busy at stop (a chunk in flight)", t.name)
            except Exception:
                log.exception("control: stopping the worker pool failed")

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _LazyPool(PoolBase):
    """The server's pool, made on first use (a server that never serves has no threads)."""

    def __init__(self, server: ControlServer):
        self._server = server

    def submit(self, fn, /, *args, **kwargs):
        return self._server.pool().submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass

