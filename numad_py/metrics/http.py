"""The HTTP endpoint: parse a listen string and serve a registry on it."""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
import threading
from typing import Any

from prometheus_client import CollectorRegistry

from .events import Metrics

log = logging.getLogger("numad_py.metrics")

DEFAULT_PORT = 9816
DEFAULT_HOST = "127.0.0.1"
DEFAULT_LISTEN = f"{DEFAULT_HOST}:{DEFAULT_PORT}"


def parse_listen(listen: str) -> tuple[str, int] | None:
    """``"127.0.0.1:9816"`` -> ``("127.0.0.1", 9816)``; ``""`` -> ``None`` (disabled).

    Accepted: ``HOST:PORT``, ``[IPV6]:PORT``, ``:PORT`` and ``PORT`` (both bind
    :data:`DEFAULT_HOST`), a hostname such as ``localhost``.  Port 0 picks a free port.
    Anything else raises ``ValueError`` with the offending text.
    """
    if listen is None:
        return None
    text = str(listen).strip()
    if not text:
        return None

    def bad(why: str) -> ValueError:
        return ValueError(f"metrics listen address {listen!r}: {why} "
                          f"(expected HOST:PORT, [IPV6]:PORT or \"\" to disable, e.g. {DEFAULT_LISTEN!r})")

    if text.startswith("["):
        close = text.find("]")
        if close < 0 or not text[close + 1:].startswith(":"):
            raise bad("an IPv6 address needs the form [ADDR]:PORT")
        host, port_text = text[1:close], text[close + 2:]
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise bad(f"{host!r} is not an IPv6 address") from None
        if address.version != 6:
            raise bad("only IPv6 addresses go in brackets")
    elif text.count(":") > 1:
        raise bad("put an IPv6 address in brackets, e.g. [::1]:9816")
    elif ":" in text:
        host, port_text = text.split(":", 1)
        host = host or DEFAULT_HOST
    else:
        host, port_text = DEFAULT_HOST, text

    if not host or any(c.isspace() for c in host) or "/" in host:
        raise bad(f"bad host {host!r}")
    if not port_text.isdigit():
        raise bad(f"port {port_text!r} is not a number")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise bad(f"port {port} is out of range 0-65535")
    return host, port


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
