"""Node sets that mean the same on every machine: ``cpu``, ``memory-only``, ``fast-tier``,
``slow-tier``, ``all``, beside numactl lists (``0-3,5``).  PURE: resolved against the
snapshot at each tick, so one policy runs on hosts of any shape.

* ``cpu``          nodes with CPUs;
* ``memory-only``  nodes with memory and no CPU (CXL expanders, HBM-only);
* ``fast-tier``    nodes in the kernel's fastest memory tier (every memory node when the
                   kernel shows one tier or none);
* ``slow-tier``    nodes in any slower tier (empty with one tier);
* ``all``          every node.

A symbolic set that is empty on this host makes its rule *inactive here*, not an error.
A literal list names exact nodes; a rule with ``fleet = true`` may name nodes this host
lacks (the rule is inactive where none exists) — without it, a typo stays an error.
"""

from __future__ import annotations

from ..nodes import NODE_SETS, parse_nodes
from .snapshot import Snapshot

def is_symbol(spec: str) -> bool:
    return spec in NODE_SETS


def resolve(spec: str, snapshot: Snapshot) -> frozenset[int]:
    """The nodes ``spec`` means on this snapshot's machine (may be empty)."""
    nodes = snapshot.nodes
    memory = [n for n in nodes if n.mem_total > 0]
    if spec == "cpu":
        return frozenset(n.id for n in nodes if n.has_cpu)
    if spec == "memory-only":
        return frozenset(n.id for n in memory if not n.has_cpu)
    if spec in ("fast-tier", "slow-tier"):
        tiers = {n.tier for n in memory if n.tier is not None}
        fastest = min(tiers) if tiers else None
        fast = frozenset(n.id for n in memory if n.tier is None or n.tier == fastest)
        return fast if spec == "fast-tier" else frozenset(n.id for n in memory) - fast
    return parse_nodes(spec, all_nodes=snapshot.node_ids) & snapshot.node_ids
