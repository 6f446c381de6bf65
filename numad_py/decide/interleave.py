"""Rules whose policy interleaves: is a running process's split right, and what to move.

A running process's policy cannot be set from outside, so the daemon makes
its *existing* pages match the policy: the executor moves page i of each
range to the node the weighted round-robin gives it (numa/place.py).  Here,
purely from the residency in the snapshot: the bytes each node holds beyond
its weighted share.  Within ``SPLIT_TOLERANCE`` of the share (pages that
round-robin per range cannot split evenly, a few pages allocated since) the
process counts as placed, so a second pass plans nothing.
"""

from __future__ import annotations

from ..nodes import format_nodes
from ..policyspec import PolicySpec, expected_split
from ..units import format_size

SPLIT_TOLERANCE = 0.02     # of the resident bytes
SPLIT_SLACK = 2 << 20      # bytes: small processes never chase a few pages


def excess_by_node(residency: dict[int, int], weights: dict[int, int]) -> dict[int, int]:
    """Bytes each node holds beyond its weighted share (nodes outside the weights: all of theirs)."""
    total = sum(residency.values())
    share = expected_split(weights, total)
    out = {}
    for node, nbytes in residency.items():
        extra = nbytes - share.get(node, 0)
        if extra > 0:
            out[node] = extra
    return out


def split_is_placed(excess: int, resident: int, unmovable: int = 0) -> bool:
    return excess <= max(unmovable, SPLIT_SLACK, int(resident * SPLIT_TOLERANCE))


def describe_split(residency: dict[int, int], weights: dict[int, int]) -> str:
    """'96.0 MiB on node 0, 32.0 MiB on node 1 (wants 3:1 over nodes 0-1)'"""
    now = ", ".join(f"{format_size(b)} on node {n}" for n, b in sorted(residency.items()) if b)
    ratio = ":".join(str(weights[n]) for n in sorted(weights))
    return f"{now or 'nothing resident'} (wants {ratio} over node {format_nodes(weights)})"


def new_allocations_note(spec: PolicySpec) -> str:
    return (f"; existing pages are moved to match {spec.text()}, new allocations follow it only in "
            "processes started through `numad-py exec` or the shim")
