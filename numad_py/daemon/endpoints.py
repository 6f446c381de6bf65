"""What the daemon listens on: the metrics endpoint and the control socket.

They are started in order (metrics first: it leaves no file behind when it
fails) and, if one cannot start, the ones already started are stopped
again, so a failed start leaves nothing behind.  A failure becomes a
:class:`StartupError` with one line naming the address and, when /proc
tells, who holds it (issue 10).
"""

from __future__ import annotations

import errno
import logging
from typing import Any, Protocol

from ..errors import NumaError
from .holders import describe, tcp_listeners, unix_listeners

log = logging.getLogger("numad_py.daemon")


class StartupError(Exception):
    """The daemon cannot start; the message is one line for the user."""


class Endpoint(Protocol):
    def start(self) -> Any: ...

    def stop(self) -> None: ...


class MetricsEndpoint:
    """The Prometheus endpoint on ``listen`` ("" = none)."""

    def __init__(self, listen: str, metrics):
        self.listen = listen
        self.metrics = metrics
        self.server: Any = None

    def start(self) -> MetricsEndpoint:
        from ..metrics import parse_listen, start_http_server
        try:
            self.server = start_http_server(self.listen, self.metrics)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        except OSError as exc:
            parsed = parse_listen(self.listen)
            who = describe(tcp_listeners(parsed[1])) if parsed and exc.errno == errno.EADDRINUSE else ""
            raise StartupError(f"cannot serve metrics on {self.listen}: {exc.strerror or exc}{who}") from None
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


class ControlEndpoint:
    """The control socket server, with bind failures made one line."""

    def __init__(self, server):
        self.server = server
        self.started = False

    def start(self) -> ControlEndpoint:
        path = self.server.socket_path
        try:
            self.server.start()
        except OSError as exc:
            who = describe(unix_listeners(path)) if exc.errno == errno.EADDRINUSE else ""
            reason = exc.strerror or str(exc)
            if exc.errno in (errno.EACCES, errno.EPERM):
                reason += " (set [control] socket to a path this user may create, or run as root)"
            raise StartupError(f"cannot listen on control socket {path}: {reason}{who}") from None
        except NumaError as exc:
            raise StartupError(f"cannot listen on control socket {path}: {exc}") from None
        self.started = True
        return self

    def stop(self) -> None:
        if self.started:
            self.started = False
            self.server.stop()


def start_all(endpoints: list) -> list:
    """Start each in order; on a failure stop the started ones and raise StartupError."""
    started: list = []
    try:
        for endpoint in endpoints:
            endpoint.start()
            started.append(endpoint)
    except BaseException:
        stop_all(started)
        raise
    return started


def stop_all(endpoints: list) -> None:
    """Stop in reverse order; one failing to stop does not keep the others running."""
    for endpoint in reversed(endpoints):
        try:
            endpoint.stop()
        except Exception as exc:
            log.error("stopping %s failed: %s", type(endpoint).__name__, exc)
