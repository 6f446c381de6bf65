"""Files the daemon leaves for others: status.json (runtime) and history.json (state).

``status.json`` carries ``pid`` and ``start_time`` (procfs.start_time of the
daemon, psutil's create_time formula), so a reader can tell a live daemon
from a leftover file: the file is live only if that pid still has that start
time.  It is removed on a clean exit.

``history.json`` under ``state_dir`` (systemd's StateDirectory=) keeps what
the planner remembers per process across restarts: first sight, the last
action (cooldown / ``every``), ``once`` satisfied and bytes the kernel
refused.  A restart then neither re-runs ``once`` rules nor breaks the
cooldown.  Entries are keyed by (pid, start time), so a process that is
gone or a pid reused after a reboot never inherits another's entry; the
first tick drops every entry whose process no longer matches.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from collections.abc import Mapping

from ..decide.history import History, ProcessHistory

log = logging.getLogger("numad_py.daemon")

STATUS_FILE = "status.json"
HISTORY_FILE = "history.json"
HISTORY_VERSION = 1


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a sibling temporary file and rename it over ``path`` (readers never see half)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = memoryview(text.encode())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        # os.write, not a file object: a text file's layers cost 0.9 ms of a 1.4 ms status
        # write in the TCG guest (tmpfs), every tick.
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class StatusFile:
    """status.json in the runtime dir, read by ``numad-py status``."""

    def __init__(self, directory: Path):
        self.path = directory / STATUS_FILE
        self._written = False

    def write(self, status: Mapping) -> None:
        # The umask applies, as before: 0600 under the unit's UMask=0077.  No indent: with one,
        # json encodes in Python, not C: 17-20 % of a tick's CPU (two cProfile runs, the numad
        # bench's busy workload in the guest, after its placements).  `numad-py status --json` pretty-prints it.
        write_atomic(self.path, json.dumps(status), mode=0o644)
        self._written = True

    def remove(self) -> None:
        """On a clean exit; only a file this daemon wrote (a second daemon refused at start
        must not delete the first one's)."""
        if self._written:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


class HistoryStore:
    """history.json in ``state_dir``; ``enabled`` is False when that directory is unusable."""

    def __init__(self, directory: Path | None):
        self.path = directory / HISTORY_FILE if directory is not None else None
        self._saved: dict | None = None      # the history last written

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def load(self) -> dict:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
            entries = data["processes"] if data.get("version") == HISTORY_VERSION else []
            history = {(int(e["pid"]), float(e["start_time"])): _entry(e) for e in entries}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring %s (%s): starting with no history", self.path, exc)
            return {}
        if history:
            log.info("history of %d process(es) loaded from %s", len(history), self.path)
        return history

    def save(self, history: History) -> None:
        # Most ticks change nothing: compared as data, not encoded (asdict per entry was 7 %
        # of a tick's CPU in the same profile).
        if self.path is None or history == self._saved:
            return
        entries = [{"pid": pid, "start_time": start, **asdict(h)} for (pid, start), h in sorted(history.items())]
        write_atomic(self.path, json.dumps({"version": HISTORY_VERSION, "processes": entries}), mode=0o600)
        self._saved = dict(history)


def _entry(e: Mapping) -> ProcessHistory:
    last, checked = e.get("last_action"), e.get("last_checked")   # absent in files before it
    return ProcessHistory(first_seen=float(e["first_seen"]),
                          last_action=float(last) if last is not None else None,
                          last_checked=float(checked) if checked is not None else None,
                          handled_once=bool(e.get("handled_once", False)),
                          unmovable_bytes=int(e.get("unmovable_bytes", 0)),
                          tier_moves=tuple((int(a), int(b), str(t), float(w)) for a, b, t, w in e.get("tier_moves", ())))
