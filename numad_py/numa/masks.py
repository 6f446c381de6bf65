"""Node masks for the syscalls, the page size, and the node check done before any call."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._numa import ffi, lib
from ..errors import InvalidNode
from ..nodes import format_nodes
from ..topology import read_topology

PAGE_SIZE: int = lib.sysconf(lib._SC_PAGESIZE)
HUGE_PAGE_SIZE = 2 << 20  # x86_64 PMD-sized transparent huge page
MASK_BITS = 1024           # nodemask width: MAX_NUMNODES of distro kernels
_LONG_BITS = ffi.sizeof("unsigned long") * 8
_MASK_BITS = MASK_BITS


def nodemask(nodes: Iterable[int]) -> tuple[Any, int]:
    mask = ffi.new("unsigned long[]", _MASK_BITS // _LONG_BITS)
    for node in nodes:
        if not 0 <= node < _MASK_BITS:
            raise InvalidNode(f"node {node} is outside the kernel's node range 0-{_MASK_BITS - 1}")
        mask[node // _LONG_BITS] |= 1 << (node % _LONG_BITS)
    # maxnode is a bit count; the kernel ignores the last bit (historic
    # off-by-one), so pass one more than the width.
    return mask, _MASK_BITS + 1


def mask_nodes(mask: Any) -> frozenset[int]:
    return frozenset(
        word * _LONG_BITS + bit
        for word in range(_MASK_BITS // _LONG_BITS)
        if mask[word]
        for bit in range(_LONG_BITS)
        if mask[word] >> bit & 1
    )


def check_nodes(nodes: Iterable[int], *, sys_root: str = "/sys") -> frozenset[int]:
    """Refuse nodes that are not online or have no memory, before the kernel does."""
    wanted = frozenset(nodes)
    if not wanted:
        raise InvalidNode("empty node set")
    topo = read_topology(sys_root)
    missing = wanted - topo.node_ids
    if missing:
        raise InvalidNode(
            f"node {format_nodes(missing)} does not exist (online nodes: {format_nodes(topo.node_ids)})"
        )
    memless = wanted - topo.memory_nodes
    if memless:
        raise InvalidNode(f"node {format_nodes(memless)} has no memory")
    return wanted


