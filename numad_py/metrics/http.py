"""The HTTP endpoint: parse a listen string and serve a registry on it.

prometheus_client's own ``start_http_server`` runs ``serve_forever()`` at its
default poll interval, which wakes the daemon twice a second to find nothing
to do (on an idle machine that was a measurable part of the daemon's CPU);
here the serve loop sleeps until a scrape arrives, and :meth:`MetricsServer.close`
wakes it with a connection of its own.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app

from ..defaults import parse_listen
from .events import Metrics

log = logging.getLogger("numad_py.metrics")

# serve_forever() looks for a shutdown request only when select() returns; close()
# makes it return at once, so this is only the backstop if that connection fails.
IDLE_POLL = 60.0
STOP_WAIT = 5.0     # seconds close() waits for the serve loop (then the thread is left: a daemon thread)
# Where close() connects to wake a server bound to a wildcard address.
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}
# A thread per scrape, at most this many at once: the unit's TasksMax (64) is shared with
# the daemon's own threads, which a flood of connections must not starve.  A connection
# past the limit is closed at once; Prometheus retries at its next scrape.
MAX_SCRAPES = 8
SCRAPE_TIMEOUT = 10.0   # seconds a connection may take to send its request: a slow one frees its slot


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True    # a scrape in progress does not hold the daemon's exit

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(MAX_SCRAPES)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()     # no thread started: nobody else gives the slot back
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out or went away: not worth a traceback on stderr (journald)."""
        log.debug("metrics: the connection from %s failed", client_address, exc_info=True)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    timeout = SCRAPE_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: Prometheus scrapes every few seconds."""


@dataclass
class MetricsServer:
    """A running endpoint.  ``port`` is the bound one (useful with port 0)."""

    host: str
    port: int
    _httpd: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        stopper = threading.Thread(target=self._httpd.shutdown, name="metrics-stop", daemon=True)
        stopper.start()
        # shutdown() sets its flag in the stopper thread; a connection that arrives before
        # the flag is set is served and the loop sleeps again, so poke until it is done.
        for _ in range(int(STOP_WAIT / 0.1)):
            self._wake()
            stopper.join(0.1)
            if not stopper.is_alive():
                break
        self._httpd.server_close()
        self._thread.join(timeout=STOP_WAIT)

    def _wake(self) -> None:
        try:
            socket.create_connection((_LOOPBACK.get(self.host, self.host), self.port), timeout=1.0).close()
        except OSError:
            pass   # already closed, or unreachable: IDLE_POLL ends the loop


def start_http_server(listen: str, registry: CollectorRegistry | Metrics) -> MetricsServer | None:
    """Serve ``registry`` (or a :class:`Metrics`' registry) on ``listen`` in a daemon thread.

    ``""`` disables the endpoint and returns ``None``.  A malformed address raises
    ``ValueError``; an address that cannot be bound (in use, not local) raises ``OSError``.
    """
    parsed = parse_listen(listen)
    if parsed is None:
        return None
    host, port = parsed
    if isinstance(registry, Metrics):
        registry = registry.registry
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except socket.gaierror as exc:
        raise ValueError(f"metrics listen address {listen!r}: cannot resolve host {host!r}: {exc}") from None
    server_class = _Server6 if family == socket.AF_INET6 else _Server
    httpd = server_class((host, port), _QuietHandler)
    httpd.set_app(make_wsgi_app(registry))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": IDLE_POLL},
                              name="metrics-http", daemon=True)
    thread.start()
    bound = httpd.server_address
    log.info("metrics endpoint on %s:%s", bound[0], bound[1])
    return MetricsServer(host=str(bound[0]), port=int(bound[1]), _httpd=httpd, _thread=thread)
