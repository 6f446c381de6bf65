"""The one memory-policy vocabulary: parsing, validation and the weighted round-robin.

Pure (no OS access): rules, ``numad-py exec``, the shim's env, the control
socket and the Python API all parse policies here, so they agree on every
spelling and every message.  Whether the *running kernel* takes a spec is a
question for :mod:`numad_py.numa.policy`; this module only says which kernel
release each feature needs (:func:`requirements`).

Text form (what ``exec`` and the socket take)::

    default | local | preferred N | preferred-many NODES | bind NODES
    | interleave NODES | weighted-interleave NODE:W,...
    [home-node N]  [balancing]

e.g. ``"weighted-interleave 0:3,2:1"``, ``"bind 0-1 home-node 1 balancing"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from math import gcd
from typing import Any

from .nodes import NodeListError, format_nodes, parse_nodes

MODES = ("default", "local", "preferred", "preferred-many", "bind", "interleave", "weighted-interleave")
NODELESS = ("default", "local")
MAX_WEIGHT = 255           # the kernel keeps a weight in a u8; 0 is not a weight
# Kernel releases that added each feature (uapi/linux/mempolicy.h history).
MODE_NEEDS = {"preferred-many": "5.15", "weighted-interleave": "6.9"}
HOME_NODE_NEEDS = "5.17"   # set_mempolicy_home_node(2)
BALANCING_NEEDS = {"bind": "5.12", "preferred-many": "6.10"}   # MPOL_F_NUMA_BALANCING
HOME_NODE_MODES = ("bind", "preferred-many")


class PolicySpecError(ValueError):
    """A policy that cannot be parsed or does not hold together; one line, says why."""


@dataclass(frozen=True)
class PolicySpec:
    """One memory policy.  ``weights`` (node, weight) pairs only for weighted-interleave,
    whose ``nodes`` are the weighted nodes."""

    mode: str
    nodes: frozenset[int] = frozenset()
    weights: tuple[tuple[int, int], ...] = ()
    home_node: int | None = None
    balancing: bool = False

    def text(self) -> str:
        """The canonical text form; ``parse_policy(spec.text()) == spec``."""
        parts = [self.mode]
        if self.mode == "weighted-interleave":
            parts.append(",".join(f"{n}:{w}" for n, w in self.weights))
        elif self.nodes:
            parts.append(format_nodes(self.nodes))
        if self.home_node is not None:
            parts += ["home-node", str(self.home_node)]
        if self.balancing:
            parts.append("balancing")
        return " ".join(parts)

    def weight_map(self) -> dict[int, int]:
        """Weight per node: the given ones, 1 each for plain interleave."""
        if self.weights:
            return dict(self.weights)
        return {n: 1 for n in sorted(self.nodes)} if self.mode == "interleave" else {}

    def spreads_pages(self) -> bool:
        """Pages go round-robin over the nodes (interleave, weighted-interleave)."""
        return self.mode in ("interleave", "weighted-interleave")


def make_policy(mode: str, nodes: Iterable[int] = (), *, weights: Mapping[Any, int] | None = None,
                home_node: int | None = None, balancing: bool = False) -> PolicySpec:
    """Build and validate a spec from parts (the rule table and the socket use this).

    ``weights`` keys are node numbers, or their digits as strings (TOML table keys)."""
    if mode not in MODES:
        mode = mode.replace("_", "-")
    if mode not in MODES:
        raise PolicySpecError(f"unknown mode {_short(mode)} for a memory policy (one of: {', '.join(MODES)})")
    node_set = frozenset(nodes)
    pairs: tuple[tuple[int, int], ...] = ()
    if weights is not None:
        if mode != "weighted-interleave":
            raise PolicySpecError(f"weights are for weighted-interleave, not {mode}")
        pairs = tuple(sorted((_node(n), _weight(n, w)) for n, w in weights.items()))
        if node_set and node_set != frozenset(n for n, _ in pairs):
            raise PolicySpecError("weighted-interleave: give the nodes through the weights only")
        node_set = frozenset(n for n, _ in pairs)
    spec = PolicySpec(mode, node_set, pairs, home_node, balancing)
    _check(spec)
    return spec


def _check(spec: PolicySpec) -> None:
    mode, nodes = spec.mode, spec.nodes
    if mode in NODELESS and nodes:
        raise PolicySpecError(f"{mode} takes no nodes")
    if mode not in NODELESS and not nodes:
        what = "weights like 0:3,1:1" if mode == "weighted-interleave" else "nodes"
        raise PolicySpecError(f"{mode} needs {what}")
    if mode == "preferred" and len(nodes) != 1:
        raise PolicySpecError("preferred takes exactly one node (use preferred-many for several)")
    if spec.home_node is not None:
        if mode not in HOME_NODE_MODES:
            raise PolicySpecError(f"home-node goes with bind or preferred-many, not {mode}")
        _node(spec.home_node)
        if spec.home_node not in nodes:
            raise PolicySpecError(f"home-node {spec.home_node} is not one of the policy's nodes {format_nodes(nodes)}")
    if spec.balancing and mode not in BALANCING_NEEDS:
        raise PolicySpecError(f"balancing goes with bind or preferred-many, not {mode}")


def parse_policy(text: str) -> PolicySpec:
    """``"bind 0-1 home-node 1"`` -> PolicySpec; PolicySpecError with the reason otherwise."""
    words = text.split()
    if not words:
        raise PolicySpecError("empty memory policy")
    mode = words.pop(0).lower()
    nodes: frozenset[int] = frozenset()
    weights: dict[int, int] | None = None
    if mode not in NODELESS and words and words[0] not in ("home-node", "balancing"):
        arg = words.pop(0)
        if mode == "weighted-interleave":
            weights = parse_weights(arg)
        else:
            nodes = _nodes(arg)
    home_node = None
    balancing = False
    while words:
        word = words.pop(0)
        if word == "home-node" and words and home_node is None:
            home_node = _number(words.pop(0), "home-node")
        elif word == "balancing" and not balancing:
            balancing = True
        else:
            raise PolicySpecError(f"unexpected {_short(word)} in policy {_short(text)} "
                                  "(after the nodes: home-node N, balancing)")
    return make_policy(mode, nodes, weights=weights, home_node=home_node, balancing=balancing)


def parse_weights(text: str) -> dict[int, int]:
    """``"0:3,2:1"`` -> {0: 3, 2: 1}; each node once, weights 1-255."""
    out: dict[int, int] = {}
    for part in text.split(","):
        node_text, sep, weight_text = part.strip().partition(":")
        if not sep:
            raise PolicySpecError(f"{_short(part.strip())} is not NODE:WEIGHT in {_short(text)} (e.g. 0:3,1:1)")
        node = _number(node_text, "node")
        if node in out:
            raise PolicySpecError(f"node {node} is weighted twice in {_short(text)}")
        out[node] = _weight(node, _number(weight_text, "weight"))
    return out


def weighted_pattern(weights: Mapping[int, int]) -> tuple[int, ...]:
    """One cycle of the weighted round-robin: node n appears w(n) times in a row, nodes in
    ascending order, as the kernel's weighted interleave hands out pages.  Weights with a
    common factor are reduced (3:3 places pages as 1:1 does, one page at a time)."""
    if not weights:
        raise PolicySpecError("no weights")
    common = 0
    for w in weights.values():
        common = gcd(common, w)
    return tuple(n for n in sorted(weights) for _ in range(weights[n] // common))


def node_of_page(pattern: tuple[int, ...], index: int, unit_pages: int = 1) -> int:
    """The node page ``index`` of a range goes to; ``unit_pages`` pages (a huge page) share one."""
    return pattern[(index // unit_pages) % len(pattern)]


def expected_split(weights: Mapping[int, int], total: int) -> dict[int, int]:
    """Bytes per node that ``total`` bytes come to under ``weights``."""
    whole = sum(weights.values())
    return {n: total * w // whole for n, w in weights.items()}


def requirements(spec: PolicySpec) -> list[tuple[str, str]]:
    """(feature, kernel release) pairs the spec needs beyond the oldest supported kernel."""
    out = []
    if spec.mode in MODE_NEEDS:
        out.append((spec.mode, MODE_NEEDS[spec.mode]))
    if spec.home_node is not None:
        out.append(("home-node", HOME_NODE_NEEDS))
    if spec.balancing:
        out.append((f"balancing with {spec.mode}", BALANCING_NEEDS[spec.mode]))
    return out


def _nodes(text: str) -> frozenset[int]:
    try:
        return parse_nodes(text)
    except NodeListError as exc:
        raise PolicySpecError(str(exc)) from None


def _node(node: object) -> int:
    if isinstance(node, str):
        return _number(node, "node")
    if isinstance(node, bool) or not isinstance(node, int) or not 0 <= node <= 1023:
        raise PolicySpecError(f"{node!r} is not a node number 0-1023")
    return node


def _weight(node: object, weight: object) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
        raise PolicySpecError(f"weight of node {node} must be a whole number 1-{MAX_WEIGHT}, got {weight!r}")
    return weight


def _number(text: str, what: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise PolicySpecError(f"{_short(text)} is not a {what} number")
    value = int(text)
    if what in ("node", "home-node") and value > 1023:
        raise PolicySpecError(f"{what} {value} is beyond the kernel's limit of 1023")
    return value


def _short(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."
