"""CLI commands that talk to the daemon: ``migrate --via-daemon``, ``drain``, status via socket.

Wired by numad_py/cli/entry.py::

    p = sub.add_parser("migrate", ...)            # existing options: pid, --to, --range, --mapping, --all, --json
    add_via_daemon_arguments(p)                   # --via-daemon, --socket
    ... in cmd_migrate: if args.via_daemon: return migrate_via_daemon(args)

    p = sub.add_parser("drain", help=...)
    add_drain_arguments(p)                        # --node, --to, --all, --socket, --json, --no-progress
    p.set_defaults(func=drain_main)

Both show a progress bar on stderr when it is a terminal and end with a one
line summary (or the result object with ``--json``).  Ctrl-C sends
``cancel`` for the running request and waits for its final reply.
"""

from __future__ import annotations

import os
import sys
import time

from ..defaults import CONTROL_SOCKET as DEFAULT_SOCKET, ENV_SOCKET
from ..units import format_size

# The control client (socket, uuid, the wire protocol; and typing) is imported by the
# functions that talk to a daemon: `status` with no daemon to ask never needs it.

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def socket_path_for(args) -> str:
    """--socket, then $NUMAD_PY_SOCKET, then the config's [control] socket, then the default."""
    explicit = getattr(args, "socket", None) or os.environ.get(ENV_SOCKET)
    if explicit:
        return explicit
    config = getattr(args, "config", None)
    if config:
        try:
            from pathlib import Path

            from ..config import load_config
            return load_config(Path(config), online_nodes=None).control.socket
        except Exception:
            pass
    return DEFAULT_SOCKET


def status_via_socket(socket_path: str | None = None, *, timeout: float = 2.0) -> dict | None:
    """The daemon's status over the socket, or None when no daemon answers there."""
    if not os.path.exists(socket_path or os.environ.get(ENV_SOCKET) or DEFAULT_SOCKET):
        return None   # connect() would fail ENOENT: nothing listens there
    from ..client import Client, DaemonError, DaemonUnavailable
    try:
        return Client(socket_path, timeout=timeout, connect_timeout=timeout).status()
    except (DaemonError, DaemonUnavailable, OSError):
        return None


# --- progress ---------------------------------------------------------------------------

class ProgressBar:
    """``[#####-----]  50%  32.0 MiB / 64.0 MiB`` redrawn on stderr, at most 10 times a second."""

    def __init__(self, label: str, stream=None, enabled: bool | None = None, width: int = 30):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.width = width
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        frac = done / total if total else 1.0
        fill = int(frac * self.width)
        self.stream.write(f"\r{self.label} [{'#' * fill}{'-' * (self.width - fill)}] {frac * 100:5.1f}%  "
                          f"{format_size(done)} / {format_size(total)}   ")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * (self.width + len(self.label) + 40) + "\r")
            self.stream.flush()


def _run_cancellable(client, label: str, call, *, show_progress: bool):
    """Run ``call(progress, request_id)`` in a thread; Ctrl-C sends cancel and waits for the reply."""
    import threading
    import uuid

    from ..client import DaemonError, DaemonUnavailable
    bar = ProgressBar(label, enabled=None if show_progress else False)
    rid = uuid.uuid4().hex
    box: dict = {}

    def target():
        try:
            box["result"] = call(bar, rid)
        except BaseException as exc:  # handed to the main thread
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    interrupted = False
    while t.is_alive():
        try:
            t.join(0.2)
        except KeyboardInterrupt:
            if interrupted:
                bar.close()
                raise
            interrupted = True
            print(f"\ncancelling request {rid} (Ctrl-C again to stop waiting)...", file=sys.stderr)
            try:
                client.cancel(rid)
            except (DaemonError, DaemonUnavailable) as exc:
                print(f"cancel failed: {exc}", file=sys.stderr)
    bar.close()
    if "error" in box:
        raise box["error"]
    return box["result"]


def _fail(command: str, exc: Exception) -> int:
    from ..client import BadRequest
    print(f"numad-py {command}: {exc}", file=sys.stderr)
    return EXIT_USAGE if isinstance(exc, BadRequest) else EXIT_FAILED


# --- migrate --via-daemon -------------------------------------------------------------------

def migrate_via_daemon(args) -> int:
    """``numad-py migrate PID --to NODES [--range R | --mapping M] [--all] --via-daemon``."""
    pid_text = str(args.pid)
    if not pid_text.isdigit() or int(pid_text) <= 0:
        print(f"numad-py migrate: bad pid {pid_text!r}: expected a positive integer", file=sys.stderr)
        return EXIT_USAGE
    pid = int(pid_text)
    from ..client import Client, DaemonError, DaemonUnavailable
    client = Client(socket_path_for(args))
    try:
        outcome = _run_cancellable(
            client, f"pid {pid} -> {args.to or args.policy}",
            lambda bar, rid: client.migrate(pid, args.to, policy=getattr(args, "policy", None),
                                            range=getattr(args, "range", None),
                                            mapping=getattr(args, "mapping", None),
                                            move_all=bool(getattr(args, "all", False)),
                                            progress=bar, request_id=rid),
            show_progress=not getattr(args, "no_progress", False))
    except (DaemonError, DaemonUnavailable) as exc:
        return _fail("migrate", exc)
    _print_result(args, outcome, migrate_summary)
    return EXIT_OK if outcome.get("status") in ("done", "dry-run") else EXIT_FAILED


def _print_result(args, result: dict, summary) -> None:
    """The result object with --json, else its one-line summary."""
    import json
    print(json.dumps(result, indent=2, sort_keys=True) if getattr(args, "json", False) else summary(result))


def migrate_summary(outcome: dict) -> str:
    r = outcome.get("result") or {}
    failed = ", ".join(f"{k} {v}" for k, v in sorted((r.get("pages_failed") or {}).items())) or "none"
    text = (f"pid {outcome.get('pid')} ({outcome.get('comm')}) -> node {outcome.get('target')}: "
            f"{outcome.get('status')}")
    if r:
        text += (f"; moved {r.get('pages_moved', 0)} pages ({format_size(r.get('bytes_moved', 0))}) in "
                 f"{r.get('seconds', 0):.3f} s, {r.get('pages_already_on_target', 0)} already there, "
                 f"{r.get('pages_not_present', 0)} not present, failed: {failed}; longest call "
                 f"{r.get('longest_call_seconds', 0) * 1000:.1f} ms")
    if outcome.get("message"):
        text += f" ({outcome['message']})"
    return text


# --- drain ------------------------------------------------------------------------------------

def drain_main(args) -> int:
    """``numad-py drain --node N [--to NODES] [--all] [--json]`` through the daemon."""
    from ..client import Client, DaemonError, DaemonUnavailable
    client = Client(socket_path_for(args))
    try:
        result = _run_cancellable(
            client, f"drain node {args.node}",
            lambda bar, rid: client.drain(args.node, to=args.to, move_all=bool(getattr(args, "all", False)),
                                          progress=bar, request_id=rid),
            show_progress=not getattr(args, "no_progress", False))
    except (DaemonError, DaemonUnavailable) as exc:
        return _fail("drain", exc)
    _print_result(args, result, drain_summary)
    return EXIT_OK if result.get("status") == "done" else EXIT_FAILED


def drain_summary(result: dict) -> str:
    failed = ", ".join(f"{k} {v}" for k, v in sorted((result.get("pages_failed") or {}).items())) or "none"
    remaining = result.get("bytes_on_node_remaining")
    lines = [f"drain node {result.get('node')} -> {result.get('targets')}: {result.get('status')}; "
             f"{result.get('process_count', 0)} process(es), moved {result.get('pages_moved', 0)} pages "
             f"({format_size(result.get('bytes_moved', 0))}); refused pages by reason: {failed}; "
             f"left on node: {format_size(remaining) if remaining is not None else '?'} of "
             f"{format_size(result.get('bytes_on_node_before', 0))}"]
    for p in result.get("processes", [])[:20]:
        pf = ", ".join(f"{k} {v}" for k, v in sorted((p.get("pages_failed") or {}).items()))
        lines.append(f"  pid {p['pid']} ({p.get('comm')}): {p.get('status')}, "
                     f"moved {format_size(p.get('bytes_moved', 0))}" + (f", refused {pf}" if pf else "")
                     + (f" ({p['message']})" if p.get("message") else ""))
    more = len(result.get("processes", [])) - 20
    if more > 0:
        lines.append(f"  ... and {more} more (use --json)")
    return "\n".join(lines)
