"""What a migration did, as plain data (counts in base pages)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..nodes import format_nodes
from .masks import PAGE_SIZE

TRANSIENT_OUTCOMES = ("busy", "not_moved", "no_memory")  # may work on the next attempt


@dataclass
class MigrationResult:
    """What one migration did; counts are in base pages of ``page_size`` bytes."""

    pid: int
    target: frozenset[int]
    pages_requested: int = 0
    moved: int = 0
    already: int = 0
    not_present: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # reason -> pages
    seconds: float = 0.0
    longest_call_seconds: float = 0.0
    calls: int = 0
    page_size: int = PAGE_SIZE
    huge_pages: int = 0           # transparent huge pages now in the range (2 MiB each), if asked for
    cancelled: bool = False
    # Pages looked up before their move; the rest sat in mappings numa_maps showed
    # with no page on a target, where "already there" is zero without a lookup.
    pages_queried: int = 0

    @property
    def bytes_moved(self) -> int:
        return self.moved * self.page_size

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    @property
    def refused_bytes(self) -> int:
        """Bytes the kernel will keep refusing (shared, unmovable...), not transient failures."""
        return sum(n for reason, n in self.failed.items() if reason not in TRANSIENT_OUTCOMES) * self.page_size

    @property
    def on_target(self) -> int:
        return self.moved + self.already

    def add(self, other: MigrationResult) -> None:
        self.pages_requested += other.pages_requested
        self.moved += other.moved
        self.already += other.already
        self.not_present += other.not_present
        self.failed.update(other.failed)
        self.seconds += other.seconds
        self.longest_call_seconds = max(self.longest_call_seconds, other.longest_call_seconds)
        self.calls += other.calls
        self.huge_pages += other.huge_pages
        self.pages_queried += other.pages_queried
        self.cancelled = self.cancelled or other.cancelled

    def to_dict(self) -> dict:
        return {
            "pid": self.pid,
            "target": format_nodes(self.target),
            "pages_requested": self.pages_requested,
            "pages_moved": self.moved,
            "pages_already_on_target": self.already,
            "pages_not_present": self.not_present,
            "pages_failed": dict(sorted(self.failed.items())),
            "bytes_moved": self.bytes_moved,
            "seconds": round(self.seconds, 6),
            "longest_call_seconds": round(self.longest_call_seconds, 6),
            "calls": self.calls,
            "huge_pages": self.huge_pages,
            "cancelled": self.cancelled,
        }


@dataclass
class ProcessMigration:
    pid: int
    source: frozenset[int]
    target: frozenset[int]
    pages_not_moved: int
    seconds: float

    def to_dict(self) -> dict:
        return {"pid": self.pid, "from": format_nodes(self.source), "to": format_nodes(self.target),
                "pages_not_moved": self.pages_not_moved, "seconds": round(self.seconds, 6)}
