"""The HTTP endpoint: parse a listen string and serve a registry on it."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
import threading
from typing import Any

from prometheus_client import CollectorRegistry

from ..defaults import parse_listen
from .events import Metrics

log = logging.getLogger("numad_py.metrics")

# One HOST:PORT grammar for check-config and the daemon (numad_py.defaults).


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
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


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
    from prometheus_client import start_http_server as _start

    try:
        httpd, thread = _start(port, addr=host, registry=registry)
    except socket.gaierror as exc:
        raise ValueError(f"metrics listen address {listen!r}: cannot resolve host {host!r}: {exc}") from None
    bound = httpd.server_address
    log.info("metrics endpoint on %s:%s", bound[0], bound[1])
    return MetricsServer(host=str(bound[0]), port=int(bound[1]), _httpd=httpd, _thread=thread)
