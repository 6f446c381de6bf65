"""Fixed names written once: default paths, the metrics address and its HOST:PORT grammar.

PURE (no I/O), at the bottom of the package, so the config model, the
daemon, the metrics endpoint, the client and the CLI all take the same
defaults and validate ``[metrics] listen`` with the same parser: what
``check-config`` accepts, the daemon can bind.
"""

from __future__ import annotations

CONFIG_PATH = "/etc/numad-py/numad-py.toml"
RUNTIME_DIR = "/run/numad-py"
STATE_DIR = "/var/lib/numad-py"
CONTROL_SOCKET = f"{RUNTIME_DIR}/control.sock"
ENV_SOCKET = "NUMAD_PY_SOCKET"
DEFAULT_PORT = 9816
DEFAULT_HOST = "127.0.0.1"
DEFAULT_LISTEN = f"{DEFAULT_HOST}:{DEFAULT_PORT}"


def parse_listen(listen: str | None) -> tuple[str, int] | None:
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
            import ipaddress  # here, not at the top: every CLI start imports this module
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
    if not (port_text.isascii() and port_text.isdigit()):
        raise bad(f"port {port_text!r} is not a number")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise bad(f"port {port} is out of range 0-65535")
    return host, port
