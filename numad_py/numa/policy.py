"""Memory policy of the calling thread and of address ranges of this process.

Every syscall result passes through :func:`numad_py.errors.raise_for_errno`;
``ffi.errno`` is read once, right after the call.
"""

from __future__ import annotations

import enum
import errno
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from .._numa import ffi, lib
from ..errors import InvalidArgument, Unsupported, raise_for_errno
from ..topology import online_nodes
from ..policyspec import BALANCING_NEEDS, HOME_NODE_NEEDS, PolicySpec
from .masks import check_nodes, mask_nodes, nodemask


class Mode(enum.IntEnum):
    DEFAULT = lib.MPOL_DEFAULT
    PREFERRED = lib.MPOL_PREFERRED
    BIND = lib.MPOL_BIND
    INTERLEAVE = lib.MPOL_INTERLEAVE
    LOCAL = lib.MPOL_LOCAL
    PREFERRED_MANY = lib.MPOL_PREFERRED_MANY
    WEIGHTED_INTERLEAVE = lib.MPOL_WEIGHTED_INTERLEAVE

    @classmethod
    def parse(cls, text: str) -> Mode:
        try:
            return cls[text.replace("-", "_").upper()]
        except KeyError:
            names = ", ".join(m.name.lower().replace("_", "-") for m in cls)
            raise InvalidArgument(f"unknown memory policy {text!r} (one of: {names})") from None


# Modes added after the oldest kernels we run on; probed before use.
_OPTIONAL_MODES = {Mode.PREFERRED_MANY: "5.15", Mode.WEIGHTED_INTERLEAVE: "6.9"}
_NODELESS_MODES = (Mode.DEFAULT, Mode.LOCAL)


@dataclass(frozen=True)
class MemPolicy:
    mode: Mode
    nodes: frozenset[int]


def get_mempolicy(addr: int | None = None) -> MemPolicy:
    """The calling thread's policy, or the policy governing ``addr`` in this process."""
    mode = ffi.new("int *")
    mask, maxnode = nodemask(())
    flags = lib.MPOL_F_ADDR if addr is not None else 0
    rc = lib.nd_get_mempolicy(mode, mask, maxnode, ffi.cast("void *", addr or 0), flags)
    if rc < 0:
        raise_for_errno(ffi.errno, op="get_mempolicy")
    return MemPolicy(Mode(mode[0] & 0xFF), mask_nodes(mask))


def allowed_nodes() -> frozenset[int]:
    """Nodes this thread may allocate on (its cpuset's mems)."""
    mode = ffi.new("int *")
    mask, maxnode = nodemask(())
    if lib.nd_get_mempolicy(mode, mask, maxnode, ffi.NULL, lib.MPOL_F_MEMS_ALLOWED) < 0:
        raise_for_errno(ffi.errno, op="get_mempolicy")
    return mask_nodes(mask)


def set_mempolicy(mode: Mode, nodes: Iterable[int] = (), *, balancing: bool = False) -> None:
    """Set the calling thread's policy; children forked later inherit it.

    ``balancing``: MPOL_F_NUMA_BALANCING, kernel NUMA balancing may move the
    pages among the policy's nodes (bind; preferred-many on 6.10+).  Without it
    an explicit policy keeps balancing from migrating the thread's pages.
    """
    mode = Mode(mode)
    _require(mode)
    if balancing and not supports_balancing(mode):
        raise Unsupported(f"balancing with {mode.name.lower().replace('_', '-')} is unsupported on this "
                          f"kernel (needs Linux {BALANCING_NEEDS.get(_mode_name(mode), '5.12')}+, bind or preferred-many)")
    nodes = frozenset(nodes)
    if mode in _NODELESS_MODES and nodes:
        raise InvalidArgument(f"{mode.name.lower()} policy takes no nodes")
    if mode not in _NODELESS_MODES and not nodes:
        raise InvalidArgument(f"{mode.name.lower()} policy needs at least one node")
    if mode == Mode.PREFERRED and len(nodes) != 1:
        raise InvalidArgument("preferred takes exactly one node (use preferred-many for several)")
    mask, maxnode = nodemask(nodes)
    flagged = mode | (lib.MPOL_F_NUMA_BALANCING if balancing else 0)
    if lib.nd_set_mempolicy(flagged, mask if nodes else ffi.NULL, maxnode if nodes else 0) < 0:
        _raise_policy_errno(ffi.errno, "set_mempolicy", mode, nodes)


def mbind(addr: int, length: int, mode: Mode, nodes: Iterable[int] = (), *,
          move: bool = False, strict: bool = False) -> None:
    """Set the policy of an address range of this process; ``move`` migrates existing pages."""
    mode = Mode(mode)
    _require(mode)
    nodes = frozenset(nodes)
    mask, maxnode = nodemask(nodes)
    flags = (lib.MPOL_MF_MOVE if move else 0) | (lib.MPOL_MF_STRICT if strict else 0)
    if lib.nd_mbind(ffi.cast("void *", addr), length, mode, mask if nodes else ffi.NULL,
                    maxnode if nodes else 0, flags) < 0:
        _raise_policy_errno(ffi.errno, "mbind", mode, nodes)


def set_home_node(addr: int, length: int, node: int) -> None:
    """``set_mempolicy_home_node`` (Linux 5.17+) on a range that has bind/preferred-many policy."""
    if lib.nd_set_mempolicy_home_node(addr, length, node, 0) < 0:
        raise_for_errno(ffi.errno, op="set_mempolicy_home_node")


def _raise_policy_errno(err: int, op: str, mode: Mode, nodes: frozenset[int]) -> None:
    if err == errno.EINVAL and mode in _OPTIONAL_MODES and not supports(mode):
        raise Unsupported(_unsupported_text(mode))
    if err == errno.EINVAL and nodes - online_nodes():
        check_nodes(nodes)  # raises InvalidNode with the names
    raise_for_errno(err, op=op, detail=f"mode {mode.name.lower()}, nodes {sorted(nodes)}")


_support_cache: dict[Mode, bool] = {}


def supports(mode: Mode) -> bool:
    """Whether the running kernel accepts ``mode``.

    Probed in a throw-away thread: a thread's policy is its own, so the
    probe cannot disturb the caller's.
    """
    mode = Mode(mode)
    if mode not in _OPTIONAL_MODES:
        return True
    if mode not in _support_cache:
        result = []

        def probe():
            node = min(allowed_nodes())
            mask, maxnode = nodemask((node,))
            result.append(lib.nd_set_mempolicy(mode, mask, maxnode) == 0)

        t = threading.Thread(target=probe, name="numad-probe")
        t.start()
        t.join()
        _support_cache[mode] = bool(result and result[0])
    return _support_cache[mode]


def _require(mode: Mode) -> None:
    if mode in _OPTIONAL_MODES and not supports(mode):
        raise Unsupported(_unsupported_text(mode))


def _unsupported_text(mode: Mode) -> str:
    name = mode.name.lower().replace("_", "-")
    return f"memory policy {name} is unsupported on this kernel (needs Linux {_OPTIONAL_MODES[mode]}+)"


def _mode_name(mode: Mode) -> str:
    return mode.name.lower().replace("_", "-")


_balancing_cache: dict[Mode, bool] = {}


def supports_balancing(mode: Mode) -> bool:
    """Whether the kernel takes MPOL_F_NUMA_BALANCING with ``mode`` (probed in a throw-away thread)."""
    mode = Mode(mode)
    if mode not in (Mode.BIND, Mode.PREFERRED_MANY) or not supports(mode):
        return False
    if mode not in _balancing_cache:
        result = []

        def probe():
            mask, maxnode = nodemask((min(allowed_nodes()),))
            result.append(lib.nd_set_mempolicy(mode | lib.MPOL_F_NUMA_BALANCING, mask, maxnode) == 0)

        t = threading.Thread(target=probe, name="numad-probe")
        t.start()
        t.join()
        _balancing_cache[mode] = bool(result and result[0])
    return _balancing_cache[mode]


def unsupported_reason(spec: PolicySpec) -> str | None:
    """One line saying why the running kernel cannot take ``spec``, or None when it can."""
    mode = Mode.parse(spec.mode)
    if not supports(mode):
        return f"memory policy {spec.mode} is unsupported on this kernel (needs Linux {_OPTIONAL_MODES[mode]}+)"
    if spec.home_node is not None and not supports_home_node():
        return f"home-node is unsupported on this kernel (needs Linux {HOME_NODE_NEEDS}+)"
    if spec.balancing and not supports_balancing(mode):
        return (f"balancing with {spec.mode} is unsupported on this kernel "
                f"(needs Linux {BALANCING_NEEDS[spec.mode]}+)")
    return None


def unsupported_modes() -> dict[str, str]:
    """Mode name -> the one-line reason, for every mode this kernel lacks (for check-config)."""
    return {_mode_name(m): _unsupported_text(m) for m in _OPTIONAL_MODES if not supports(m)}


def apply_policy(spec: PolicySpec) -> None:
    """Make ``spec`` the calling thread's policy (weights are the system table's: see weights.py)."""
    reason = unsupported_reason(spec)
    if reason is not None:
        raise Unsupported(reason)
    set_mempolicy(Mode.parse(spec.mode), spec.nodes, balancing=spec.balancing)


def supports_home_node() -> bool:
    """set_mempolicy_home_node exists iff a zero-length call does not fail with ENOSYS."""
    if lib.nd_set_mempolicy_home_node(0, 0, 0, 0) == 0:
        return True
    return ffi.errno != errno.ENOSYS


def numa_available() -> bool:
    return lib.numa_available() >= 0


