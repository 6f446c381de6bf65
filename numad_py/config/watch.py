"""Notice that the policy files changed, for ``[daemon] reload_on_change``.

Where nobody sends SIGHUP — a Kubernetes ConfigMap mounted as a directory, whose
files the kubelet replaces by swapping a symlink — the daemon compares, once per
scan, what ``stat`` says of the main file and every ``rules.d/*.toml`` (through
symlinks: a swapped file has a new inode).
"""

from __future__ import annotations

import os
from pathlib import Path

from .loader import rules_files

Fingerprint = tuple[tuple[str, int, int, int], ...]


def fingerprint(config_path: Path) -> Fingerprint:
    entries = []
    for path in [config_path, *rules_files(config_path)]:
        try:
            st = os.stat(path)
        except OSError:
            entries.append((str(path), -1, -1, -1))  # gone: a change too
            continue
        entries.append((str(path), st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(entries)


class ConfigWatcher:
    """``changed()`` is true once for every change since the previous call."""

    def __init__(self, config_path: str | Path):
        self.path = Path(config_path)
        self._seen = fingerprint(self.path)

    def changed(self) -> bool:
        now = fingerprint(self.path)
        if now == self._seen:
            return False
        self._seen = now
        return True
