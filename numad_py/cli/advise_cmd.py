"""``numad-py advise`` and the ``numad`` front door (``numad -w NCPUS[:MB]``).

libvirt's ``placement='auto'`` runs ``numad -w NCPUS:MB`` and parses stdout as a
node list (``0-1``); it is given the same grammar here, with numad's exit codes
(0 with advice, 1 on failure).

The daemon answers when it runs (the socket's ``advise`` op): it remembers what
it advised moments ago, so two VMs started together get different nodes.
Without a daemon the advice is computed here from a fresh snapshot.
"""

from __future__ import annotations

import json
import sys

from ..nodes import format_nodes
from ..units import format_size, parse_size


class AdviseError(ValueError):
    """Bad advise input: exit 2 (numad-py) or 1 (numad's own convention)."""


def parse_count(text: str, what: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        raise AdviseError(f"bad {what} {text!r}: expected a positive whole number")
    return int(text)


def parse_memory(text: str | None) -> int:
    if text is None:
        return 0
    try:
        value = parse_size(int(text) if text.isascii() and text.isdigit() else text)
    except ValueError as exc:
        raise AdviseError(str(exc)) from None
    return value


def compute(cpus: int, memory: int, socket_path: str | None = None) -> dict:
    """The advice as the socket's reply has it (``nodes``, ``nodelist``, ``reasons``...),
    plus ``source``: "daemon", or "direct" when no daemon answered."""
    from ..client import Client, DaemonError, DaemonUnavailable
    try:
        reply = Client(socket_path, timeout=10, connect_timeout=1).advise(cpus, memory)
        return reply | {"source": "daemon"}
    except (DaemonError, DaemonUnavailable, OSError):
        pass        # no daemon, not allowed to reach it, or one without `advise`: ask no one
    from ..decide.advise import advise
    from ..sense.node_load import node_snapshot
    result = advise(node_snapshot(), cpus=cpus, memory=memory)
    return result.to_dict() | {"nodelist": format_nodes(result.nodes), "cpus": cpus, "memory_bytes": memory,
                               "reserved_seconds": 0, "source": "direct"}


def advise_main(cpus_text: str, memory_text: str | None, as_json: bool, socket_path: str | None = None) -> int:
    try:
        cpus = parse_count(cpus_text, "CPU count")
        memory = parse_memory(memory_text)
    except AdviseError as exc:
        print(f"numad-py advise: {exc}", file=sys.stderr)
        return 2
    data = compute(cpus, memory, socket_path)
    if not data["nodes"]:
        print(f"numad-py advise: {'; '.join(data['reasons'])}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        want = f"{cpus} CPU(s)" + (f", {format_size(memory)}" if memory else "")
        held = f"; reserved by the daemon for {data['reserved_seconds']:g} s" if data["reserved_seconds"] else ""
        print(data["nodelist"])
        print(f"# {want} ({data['source']}): " + "; ".join(data["reasons"]) + held, file=sys.stderr)
    return 0
