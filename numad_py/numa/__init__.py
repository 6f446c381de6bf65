"""Typed Python API over the cffi binding ``numad_py._numa``.

* :mod:`.masks` — node masks, the page size, the node check before a call;
* :mod:`.policy` — memory policy of this thread / this process's ranges;
* :mod:`.migrate` — moving and locating the pages of any process;
* :mod:`.results` — what a migration did, as plain data;
* :mod:`.place` — pages of a running process placed by weighted round-robin;
* :mod:`.weights` — the machine's weighted-interleave weight table.

Every name used elsewhere is importable from ``numad_py.numa`` as before.
No /proc reading of its own: :mod:`numad_py.procfs` does that.
"""

from __future__ import annotations

from ..errors import NumaError
from ..stall import DEFAULT_MAX_STALL, StallPolicy
from .masks import HUGE_PAGE_SIZE, PAGE_SIZE, check_nodes
from .migrate import (
    DEFAULT_BATCH,
    MAX_BATCH,
    migrate_process,
    migrate_range,
    migrate_ranges,
    move_pages,
    query_pages,
    range_residency,
    raise_syscall_error,
)
from .place import place_ranges
from .policy import (
    MemPolicy,
    Mode,
    allowed_nodes,
    apply_policy,
    supports_balancing,
    unsupported_reason,
    get_mempolicy,
    mbind,
    numa_available,
    set_home_node,
    set_mempolicy,
    supports,
    supports_home_node,
)
from .results import TRANSIENT_OUTCOMES, MigrationResult, ProcessMigration
from .weights import read_weights, write_weights

__all__ = [
    "Mode", "MemPolicy", "MigrationResult", "ProcessMigration", "NumaError", "PAGE_SIZE", "HUGE_PAGE_SIZE",
    "DEFAULT_BATCH", "MAX_BATCH", "DEFAULT_MAX_STALL", "StallPolicy", "TRANSIENT_OUTCOMES",
    "get_mempolicy", "set_mempolicy", "mbind", "set_home_node", "supports", "supports_home_node",
    "allowed_nodes", "check_nodes", "migrate_range", "migrate_ranges", "range_residency", "query_pages",
    "move_pages", "migrate_process", "numa_available", "raise_syscall_error",
    "apply_policy", "unsupported_reason", "supports_balancing", "place_ranges", "read_weights", "write_weights",
]
