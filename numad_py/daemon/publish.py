"""What the fork-time shim reads without talking to the daemon, published after each tick.

Two publishers, run separately by the tick's error boundary, so a failure
writing one file does not stop the other.
"""

from __future__ import annotations

from pathlib import Path

from ..shim import publish_node_table, publish_shim_rules

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

    def __call__(self, snapshot, config) -> None:
        publish_node_table(
            self.path,
            {n.id: n.mem_free for n in snapshot.nodes},
            total_bytes_by_node={n.id: n.mem_total for n in snapshot.nodes},
            cpu_nodes=[n.id for n in snapshot.nodes if n.has_cpu],
            valid_for=table_validity(config.daemon.scan_interval),
        )


class ShimRulesPublisher:
    """Which programs spread their children (rules with spread_children), for preloaded
    shims to read at start-up; rewritten only when it changes."""

    def __init__(self, runtime_dir: Path):
        self.path = runtime_dir / SHIM_RULES
        self.table_path = runtime_dir / NODE_TABLE

    def __call__(self, snapshot, config) -> None:
        d = config.daemon
        publish_shim_rules(self.path, config.rules, include=d.include, exclude=d.exclude,
                           table_path=self.table_path)
