"""One admitted connection on the event loop: line framing in, an outbox out.

Reading: a line must end (newline) within ``read_timeout`` of its first byte
and be at most ``max_line`` bytes; a connection with nothing in flight and no
complete line for ``read_timeout`` is closed — sending bytes without a newline
does not keep it open (slowloris).  Each complete line is handed to the
request layer, which is awaited before the next line is read (so a client's
requests are answered in order; placement jobs run on in the background).

Writing: replies are queued in an :class:`Outbox` where progress events are
coalesced (the latest wins), so a client that does not read never blocks a
migration; a send that cannot progress for ``read_timeout`` drops the client.
A half-closed client (``shutdown(SHUT_WR)``) still gets every reply.
"""

from __future__ import annotations

import asyncio
import logging
import select
from collections import deque
from collections.abc import Awaitable, Callable

from . import protocol as P
from .auth import Peer

log = logging.getLogger("numad_py.control")

WRITE_BUFFER = 256 * 1024     # bytes queued for one client before we wait for it to read


class Outbox:
    """Messages for one connection; progress events coalesced per request id.

    Used on the loop thread only (workers hand messages over with
    ``call_soon_threadsafe``), so it needs no lock.
    """

    def __init__(self) -> None:
        self._queue: deque[tuple[str, bytes]] = deque()
        self._progress: dict[bytes, bytes] = {}
        self._ready = asyncio.Event()
        self.closed = False

    def put(self, message: dict) -> None:
        if not self.closed:
            self._queue.append(("msg", P.encode(message)))
            self._ready.set()

    def put_progress(self, request_id: str, message: dict) -> None:
        if self.closed:
            return
        key = request_id.encode()
        if key not in self._progress:
            self._queue.append(("progress", key))
        self._progress[key] = P.encode(message)   # the latest value wins
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    def empty(self) -> bool:
        return not self._queue

    def get_nowait(self) -> bytes | None:
        if not self._queue:
            return None
        kind, item = self._queue.popleft()
        return self._progress.pop(item) if kind == "progress" else item

    async def get(self) -> bytes | None:
        """The next bytes to send; None once closed and drained."""
        while True:
            data = self.get_nowait()
            if data is not None or self.closed:
                return data
            self._ready.clear()
            await self._ready.wait()


class Connection:
    """One admitted peer: its credentials, framing, outbox and running requests."""

    def __init__(self, peer: Peer, admin: bool, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, read_timeout: float, max_line: int):
        self.peer = peer
        self.admin = admin
        self.reader = reader
        self.writer = writer
        self.read_timeout = read_timeout
        self.max_line = max_line
        self.loop = asyncio.get_running_loop()
        self.outbox = Outbox()
        self.tasks: set[asyncio.Task] = set()
        self.dead = False          # replies can no longer be delivered
        self.stopping = False      # the server is shutting down: read no more lines
        self.task: asyncio.Task | None = None     # the task serving this connection
        sock = writer.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1

    # --- used by the request layer -------------------------------------------

    def send(self, message: dict) -> None:
        """Send or queue a reply (loop thread)."""
        if self.dead:
            return
        if self._writable():
            self.writer.write(P.encode(message))
        else:
            self.outbox.put(message)

    def send_progress(self, request_id: str, message: dict) -> None:
        if self.dead:
            return
        if self._writable():
            self.writer.write(P.encode(message))
        else:
            self.outbox.put_progress(request_id, message)

    def _writable(self) -> bool:
        # Straight to the socket while nothing waits before it and the client keeps up
        # (no task switch per reply); otherwise through the outbox, coalescing progress.
        return (self.outbox.empty() and not self.outbox.closed
                and self.writer.transport.get_write_buffer_size() < WRITE_BUFFER)

    def send_threadsafe(self, message: dict) -> None:
        self.loop.call_soon_threadsafe(self.send, message)

    def progress_threadsafe(self, request_id: str, message: dict) -> None:
        self.loop.call_soon_threadsafe(self.send_progress, request_id, message)

    def spawn(self, work: Awaitable[None]) -> asyncio.Task:
        """Run a request in the background; the connection stays open until it ends."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def client_gone(self) -> bool:
        """True once the peer closed its end for good (not a half-close); any thread."""
        if self.dead:
            return True
        if self._fd < 0:
            return False
        poller = select.poll()
        poller.register(self._fd, select.POLLHUP | select.POLLERR)
        try:
            # AF_UNIX stream: POLLHUP only once both directions are shut, so a
            # client that did shutdown(SHUT_WR) and waits for replies is not gone.
            return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
                       for _fd, ev in poller.poll(0))
        except (OSError, ValueError):
            return True

    # --- the loops ----------------------------------------------------------------

    async def serve(self, handle: Callable[[Connection, bytes], Awaitable[None]]) -> None:
        writing = asyncio.ensure_future(self._write_loop())
        try:
            await self._read_loop(handle)
            while self.tasks:   # replies still owed
                await asyncio.wait(set(self.tasks), timeout=0.25)
                if self.client_gone():
                    self.dead = True
        finally:
            self.outbox.close()
            try:
                await asyncio.wait_for(writing, self.read_timeout if not self.stopping else 0.5)
            except (TimeoutError, asyncio.CancelledError, OSError):
                writing.cancel()
            self.close()

    def close(self) -> None:
        try:
            self.writer.close()
        except (OSError, RuntimeError):
            pass

    async def _read_loop(self, handle) -> None:
        buf = bytearray()
        loop = self.loop
        line_started: float | None = None
        last_activity = loop.time()
        while not self.stopping:
            now = loop.time()
            if line_started is not None:
                deadline = line_started + self.read_timeout
            elif self.tasks:
                deadline = now + self.read_timeout   # busy: idleness does not count
            else:
                deadline = last_activity + self.read_timeout
            try:
                # asyncio.timeout_at: no task per read (wait_for makes one; that is most of
                # the loop's cost per request when hundreds of clients are active).
                async with asyncio.timeout_at(deadline):
                    chunk = await self.reader.read(65536)
            except TimeoutError:
                if line_started is not None:
                    self.send(P.error(None, "bad_request", "incomplete request line: no newline "
                                                           f"within {self.read_timeout:g} s"))
                    return
                if not self.tasks:
                    log.debug("closing idle connection from %s", self.peer.describe())
                    return
                continue
            except (OSError, asyncio.IncompleteReadError):
                return  # reset by the peer
            if self.stopping:
                return
            if not chunk:
                # EOF: the client half-closed or left.  A last line without a
                # newline still counts; every reply is still delivered.
                if buf.strip():
                    await handle(self, bytes(buf))
                if self.client_gone():
                    self.dead = True
                return
            arrival = loop.time()
            if line_started is None:
                line_started = arrival
            buf += chunk
            while not self.stopping:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                line = bytes(buf[:nl])
                del buf[: nl + 1]
                if len(line) > self.max_line:
                    self.send(P.error(None, "too_large", f"request line of {len(line)} bytes is over "
                                                         f"the limit of {self.max_line} bytes"))
                    return
                if line.strip():   # blank lines are not activity (no keep-alive by newlines)
                    await handle(self, line)
                    last_activity = loop.time()
                line_started = arrival if buf else None
            if len(buf) > self.max_line:
                self.send(P.error(None, "too_large", "request line longer than the limit of "
                                                     f"{self.max_line} bytes"))
                return

    async def _write_loop(self) -> None:
        while True:
            data = await self.outbox.get()
            if data is None:
                return
            if self.dead:
                continue
            try:
                self.writer.write(data)
                if self.writer.transport.get_write_buffer_size() > WRITE_BUFFER:
                    async with asyncio.timeout(self.read_timeout):   # a client not reading
                        await self.writer.drain()
            except (TimeoutError, OSError, RuntimeError):
                # Gone, or not reading for read_timeout: drop what is left for it.
                self.dead = True
                self.writer.transport.abort()
