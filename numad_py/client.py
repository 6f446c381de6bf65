"""Python API for applications: ask numad-py to move memory, or move it in-process.

Through the daemon (an unprivileged process may move its own memory; root
or the admin group any process's)::

    from numad_py.client import Client
    c = Client()                                  # /run/numad-py/control.sock
    c.migrate(pid, to=1, mapping="[heap]", progress=lambda done, total: ...)
    c.move_buffer(my_numpy_array, node=1)         # a buffer of this process

Without the daemon (no socket, no privileges needed for one's own pages)::

    from numad_py.client import move_buffer
    move_buffer(buf, node=1, via_daemon=False)

Each call opens its own connection, so a ``Client`` can be shared between
threads: one thread runs ``migrate(..., request_id="job1")`` while another
calls ``cancel("job1")``.
"""

from __future__ import annotations

import errno
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable

from .control import wire as P  # no pydantic: a light import for every CLI command
from .errors import InvalidArgument, NumaError

from .defaults import CONTROL_SOCKET as DEFAULT_SOCKET  # written once
ENV_SOCKET = "NUMAD_PY_SOCKET"

Progress = Callable[[int, int], None]


class DaemonError(NumaError):
    """The daemon refused or failed a request; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str, *, request_id: str | None = None):
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message
        self.request_id = request_id


class Forbidden(DaemonError, PermissionError):
    """Not allowed for this peer (see the message for the rule)."""


class NotFound(DaemonError, LookupError):
    """No such mapping / running request."""


class Gone(DaemonError):
    """The target process is gone."""


class Busy(DaemonError):
    """Too many connections or requests; try again."""


class BadRequest(DaemonError, ValueError):
    """The request itself was wrong (types, nodes, ranges)."""


class DaemonUnavailable(NumaError, ConnectionError):
    """No daemon answered on the socket."""


_ERRORS = {"forbidden": Forbidden, "not_found": NotFound, "gone": Gone, "busy": Busy,
           "bad_request": BadRequest, "unknown_op": BadRequest, "too_large": BadRequest}


def _node_text(nodes: int | str | Iterable[int]) -> str | list[int]:
    if isinstance(nodes, bool):
        raise InvalidArgument("a node list is not a boolean")
    if isinstance(nodes, int):
        return str(nodes)
    if isinstance(nodes, str):
        return nodes
    return sorted(int(n) for n in nodes)


class Client:
    def __init__(self, socket_path: str | None = None, *, timeout: float | None = None,
                 connect_timeout: float = 5.0):
        self.socket_path = socket_path or os.environ.get(ENV_SOCKET) or DEFAULT_SOCKET
        self.timeout = timeout              # per reply/event; None = wait as long as the work takes
        self.connect_timeout = connect_timeout

    # --- operations --------------------------------------------------------------

    def migrate(self, pid: int, to=None, *, policy: str | None = None, range: str | Iterable[str] | None = None,
                mapping: str | Iterable[str] | None = None, move_all: bool = False,
                progress: Progress | None = None, request_id: str | None = None) -> dict:
        """Move ``pid``'s pages (all, some hex ranges ``"7f00-7f80"``, or named mappings) to ``to``,
        or page by page after an interleave ``policy`` (``"weighted-interleave 0:3,1:1"``).

        Returns the executor's outcome: ``status`` ("done", "cancelled", "skipped",
        "retry", "dry-run"), ``message``, and ``result`` (pages moved/failed by reason).
        """
        return self.request("migrate", pid=pid, to=None if to is None else _node_text(to), policy=policy,
                            range=_listish(range),
                            mapping=_listish(mapping), move_all=move_all or None,
                            progress=progress, request_id=request_id)

    def drain(self, node: int, to=None, *, move_all: bool = False, progress: Progress | None = None,
              request_id: str | None = None) -> dict:
        """Move every movable page of every process off ``node`` (root/admin only)."""
        return self.request("drain", node=node, to=None if to is None else _node_text(to),
                            move_all=move_all or None, progress=progress, request_id=request_id)

    def query(self, pid: int, range: str | None = None) -> dict:
        """Resident bytes per node of ``pid`` (or of one hex range of it)."""
        return self.request("query", pid=pid, range=range)

    def advise(self, cpus: int, memory: int = 0, *, reserve: bool = True) -> dict:
        """The node set where a new workload of ``cpus`` CPUs and ``memory`` bytes fits best
        now, with the reasons; an admin's advice is reserved for a short while."""
        return self.request("advise", cpus=cpus, memory=memory, reserve=reserve)

    def status(self) -> dict:
        return self.request("status")

    def plan(self) -> dict:
        return self.request("plan")

    def reload(self) -> dict:
        return self.request("reload")

    def cancel(self, request_id: str) -> dict:
        """Cancel a running migrate/drain by its id; it stops within one chunk."""
        return self.request("cancel", request=request_id)

    def move_buffer(self, buf, node: int, *, via_daemon: bool = True, bind: bool = False,
                    progress: Progress | None = None) -> dict:
        """Move the pages backing ``buf`` (any buffer-protocol object) of this process to ``node``.

        ``via_daemon``: ask the daemon (a range of our own pid; the usual way
        when the daemon runs).  Otherwise move them here with ``move_pages``
        on ourselves, or with ``bind=True`` with ``mbind(MPOL_BIND, MOVE)`` so
        pages faulted in later land on ``node`` too.  The range is widened to
        whole pages, so neighbours sharing the first or last page move too.
        """
        start, end = page_span(buf)
        if via_daemon:
            if bind:
                raise InvalidArgument("bind=True sets this process's own policy: use via_daemon=False")
            return self.migrate(os.getpid(), node, range=f"{start:x}-{end:x}", progress=progress)
        return move_buffer_local(buf, node, bind=bind, progress=progress)

    # --- the wire -----------------------------------------------------------------------

    def request(self, op: str, *, progress: Progress | None = None, request_id: str | None = None,
                **args) -> dict:
        """Send one request; call ``progress(done, total)`` per event; return ``result``."""
        rid = request_id or uuid.uuid4().hex
        if op in P.PLACEMENT_OPS and progress is None:
            args["progress"] = False
        message = P.request(op, rid, **args)
        with self._connect() as sock:
            sock.sendall(P.encode(message))
            reader = sock.makefile("rb")
            while True:
                line = reader.readline(P.MAX_LINE * 16)
                if not line:
                    raise DaemonUnavailable(f"numad-py closed the connection before answering "
                                            f"{op} {rid}")
                try:
                    reply = P.parse_reply(line)
                except P.ProtocolError as exc:
                    raise DaemonError(exc.code, exc.message, request_id=rid) from None
                if reply.get("id") not in (rid, None):
                    continue
                if reply.get("event") == "progress":
                    if progress is not None:
                        progress(reply["done_bytes"], reply["total_bytes"])
                    continue
                if reply["ok"]:
                    return reply["result"]
                err = reply["error"]
                raise _ERRORS.get(err["code"], DaemonError)(err["code"], err["message"], request_id=rid)

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.connect_timeout)
        deadline = time.monotonic() + self.connect_timeout
        try:
            while True:
                try:
                    sock.connect(self.socket_path)
                    break
                except BlockingIOError:
                    # AF_UNIX says EAGAIN (not EINPROGRESS) while the listen backlog is
                    # full: the daemon is busy accepting; try again until the timeout.
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.01)
        except OSError as exc:
            sock.close()
            hint = {errno.ENOENT: "is numad-py running?", errno.ECONNREFUSED: "is numad-py running?",
                    errno.EAGAIN: "the daemon's connection backlog stayed full",
                    errno.EACCES: "the socket's mode/group do not let this user connect"}.get(exc.errno or 0, "")
            raise DaemonUnavailable(f"cannot connect to numad-py at {self.socket_path}: "
                                    f"{exc.strerror or exc}" + (f" ({hint})" if hint else "")) from None
        sock.settimeout(self.timeout)
        return sock


def _listish(value):
    if value is None or isinstance(value, str):
        return value
    return list(value)


# --- buffers --------------------------------------------------------------------------------

def buffer_address(buf) -> tuple[int, int]:
    """(address, length in bytes) of a contiguous buffer: mmap, bytearray, bytes, numpy array...

    Works for read-only buffers too.  The caller keeps ``buf`` alive.
    """
    try:
        view = memoryview(buf)
    except TypeError:
        raise InvalidArgument(f"{type(buf).__name__} does not expose the buffer protocol") from None
    with view:
        if not view.c_contiguous:
            raise InvalidArgument("the buffer is not C-contiguous (e.g. a strided numpy slice, or a "
                                  "Fortran-order array: pass its transpose .T): copy it or move its "
                                  "base array")
        if view.nbytes == 0:
            raise InvalidArgument("the buffer is empty")
        from ._numa import ffi
        # from_buffer keeps the buffer exported while the cdata lives; we only need its address.
        data = ffi.from_buffer(view)
        try:
            return int(ffi.cast("uintptr_t", data)), view.nbytes
        finally:
            ffi.release(data)


def page_span(buf) -> tuple[int, int]:
    """The page-aligned ``[start, end)`` covering ``buf``."""
    page = os.sysconf("SC_PAGE_SIZE")
    addr, length = buffer_address(buf)
    start = addr - addr % page
    end = -(-(addr + length) // page) * page
    return start, end


def move_buffer_local(buf, node: int, *, bind: bool = False, progress: Progress | None = None) -> dict:
    """Move ``buf``'s pages to ``node`` from this process, without the daemon."""
    from . import numa
    start, end = page_span(buf)
    if bind:
        numa.mbind(start, end - start, numa.Mode.BIND, [node], move=True)
        res = numa.range_residency(os.getpid(), start, end)
        return {"method": "mbind", "start": f"{start:x}", "end": f"{end:x}", "node": node,
                "nodes": res["nodes"], "other": res["other"]}
    # counts huge pages as the daemon's answer does, so both paths report the same fields
    result = numa.migrate_range(os.getpid(), start, end, [node], progress=progress, count_huge_pages=True)
    return dict(result.to_dict(), method="move_pages", start=f"{start:x}", end=f"{end:x}")


def move_buffer(buf, node: int, *, via_daemon: bool = True, socket_path: str | None = None,
                **options) -> dict:
    """Module-level shortcut for :meth:`Client.move_buffer`."""
    if not via_daemon:
        return move_buffer_local(buf, node, **options)
    return Client(socket_path).move_buffer(buf, node, **options)


__all__ = ["Client", "DaemonError", "Forbidden", "NotFound", "Gone", "Busy", "BadRequest",
           "DaemonUnavailable", "buffer_address", "page_span", "move_buffer", "move_buffer_local",
           "DEFAULT_SOCKET"]

