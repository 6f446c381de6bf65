"""Node lists as numactl writes them: ``0-3,5``, ``all``.

Pure functions, no I/O: ``all`` is resolved against a node set the caller
passes in, so this module is usable from the decision core.
"""

from __future__ import annotations

TYPE_CHECKING = False  # collections.abc imports collections: a light command's start-up pays it
if TYPE_CHECKING:
    from collections.abc import Iterable


# Node sets that mean the same on every machine, resolved at each tick (decide/nodesets.py).
NODE_SETS = ("cpu", "memory-only", "fast-tier", "slow-tier")
MAX_NODE = 1023  # the kernel's MAX_NUMNODES on x86_64 distro kernels (CONFIG_NODES_SHIFT=10)
MAX_CPU = 65535  # far above NR_CPUS (8192 at most on x86_64): bounds a cpulist's set


class NodeListError(ValueError):
    """A node list that cannot be parsed; the message says where and why."""


def parse_nodes(text: str, *, all_nodes: Iterable[int] | None = None) -> frozenset[int]:
    """Parse ``"0-3,5"`` or ``"all"`` into a set of node ids.

    ``all`` needs ``all_nodes`` (the online nodes); without it, ``all`` is an error.
    """
    spec = text.strip()
    if not spec:
        raise NodeListError("empty node list")
    if spec == "all":
        if all_nodes is None:
            raise NodeListError("'all' needs the machine's node list")
        return frozenset(all_nodes)
    return _parse_ranges(spec, limit=MAX_NODE, what="node")


def _parse_ranges(spec: str, *, limit: int | None, what: str) -> frozenset[int]:
    ids: set[int] = set()
    for part in spec.split(","):
        lo_text, sep, hi_text = part.strip().partition("-")
        lo = _number(lo_text, spec, limit, what)
        hi = _number(hi_text, spec, limit, what) if sep else lo
        if hi < lo:
            raise NodeListError(f"{what} range {_short(part.strip())} runs backwards in {_short(spec)}")
        ids.update(range(lo, hi + 1))
    return frozenset(ids)


def _number(text: str, spec: str, limit: int | None, what: str) -> int:
    text = text.strip()
    # ASCII only: str.isdigit() and int() also take "²", "１２" and "١٢".
    if not (text.isascii() and text.isdigit()):
        raise NodeListError(f"{_short(text)} is not a {what} number in {_short(spec)} (expected e.g. '0-3,5' or 'all')")
    value = int(text)
    if limit is not None and value > limit:
        raise NodeListError(f"{what} {value} is beyond the kernel's limit of {limit}")
    return value


def _short(text: str, limit: int = 40) -> str:
    """repr() of at most ``limit`` characters of the shown text: escapes (\\U0001f600) count too."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[:limit] + f"... ({len(text)} characters)"


def format_nodes(nodes: Iterable[int]) -> str:
    """The inverse of :func:`parse_nodes`: ``{0,1,2,3,5}`` -> ``"0-3,5"``."""
    ordered = sorted(set(nodes))
    runs: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        runs.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(runs)


def parse_cpulist(text: str) -> frozenset[int]:
    """sysfs cpulist files use the same grammar as node lists; an empty file means none."""
    spec = text.strip()
    return _parse_ranges(spec, limit=MAX_CPU, what="cpu") if spec else frozenset()
