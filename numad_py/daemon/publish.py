"""What the fork-time shim reads without talking to the daemon, published after each tick.

Two publishers, run separately by the tick's error boundary, so a failure
writing one file does not stop the other.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..shim import NodeTableWriter, publish_shim_rules
from ..shim.gate import gate_path

NODE_TABLE = "node-table"
SHIM_RULES = "shim-rules"
# The table's expiry is a u64 of nanoseconds: clamp it (issue 18 item 11, a
# scan_interval of "3000000h" overflowed it).  A daemon scanning less than
# weekly leaves the shim on its own between scans anyway.
MAX_TABLE_VALIDITY = 7 * 24 * 3600.0


def table_validity(scan_interval: float) -> float:
    """Three scan intervals: a daemon that stops refreshing must not steer forks forever."""
    return min(3 * scan_interval, MAX_TABLE_VALIDITY)


class NodeTablePublisher:
    """Free memory per node, for the shim's least-loaded choice."""

    def __init__(self, runtime_dir: Path):
        self.path = runtime_dir / NODE_TABLE
        self._writer = NodeTableWriter(self.path)

    def __call__(self, snapshot, config) -> None:
        self._writer.publish(
            {n.id: n.mem_free for n in snapshot.nodes},
            total_bytes_by_node={n.id: n.mem_total for n in snapshot.nodes},
            cpu_nodes=[n.id for n in snapshot.nodes if n.has_cpu],
            valid_for=table_validity(config.daemon.scan_interval),
        )


class ShimRulesPublisher:
    """Which programs spread their children (rules with spread_children), for preloaded
    shims to read at start-up; rewritten only when it changes.

    The files follow from the config and the user database: for the config last published,
    while both files are as that publication left them and for REPUBLISH_AFTER at most (a
    user a rule names may be created later), a tick costs two stats instead of compiling the
    rules and reading both files back (0.33 ms of CPU a tick on the host)."""

    REPUBLISH_AFTER = 60.0

    def __init__(self, runtime_dir: Path, clock=time.monotonic):
        self.path = runtime_dir / SHIM_RULES
        self.table_path = runtime_dir / NODE_TABLE
        self.clock = clock
        self._published: tuple[object, tuple, float] | None = None   # (config, _stats(), when) as last published
        self._stat_paths = (os.fspath(self.path), os.fspath(gate_path(self.path)))

    def __call__(self, snapshot, config) -> None:
        last = self._published
        if (last is not None and last[0] is config and self.clock() - last[2] < self.REPUBLISH_AFTER
                and last[1] == self._stats()):
            return
        self._published = None
        d = config.daemon
        publish_shim_rules(self.path, config.rules, include=d.include, exclude=d.exclude,
                           table_path=self.table_path)
        self._published = (config, self._stats(), self.clock())

    def _stats(self) -> tuple:
        """Identity and last change of both files; None for a missing one."""
        out: list[tuple[int, int, int, int] | None] = []
        for path in self._stat_paths:   # strings made once: building the Paths each tick was most of _stats()
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                out.append(None)
            else:
                out.append((st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode))
        return tuple(out)
