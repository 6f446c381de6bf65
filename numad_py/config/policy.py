"""A rule's ``policy = { mode = ..., ... }`` table, checked with the shared vocabulary.

``policy = { mode = "weighted-interleave", weights = { 0 = 3, 2 = 1 } }``,
``policy = { mode = "interleave", nodes = "0-1" }``,
``policy = { mode = "bind", nodes = "0-1", home_node = 1, balancing = true }``.

Parsing and validation are :mod:`numad_py.policyspec`'s (the same as ``exec``
and the socket).  Whether this machine's kernel has the mode comes from the
validation context key ``unsupported_policies`` (mode -> one-line reason),
filled by whoever loads the config on the machine that will run it; without
it only the syntax is checked.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from ..nodes import NodeListError, parse_nodes
from ..policyspec import NODELESS, PolicySpec, PolicySpecError, make_policy


class PolicyTable(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mode: str = Field(description="preferred, preferred-many, bind, interleave or weighted-interleave.")
    nodes: str | None = Field(None, description="Node list of the policy (weighted-interleave: use weights).")
    weights: dict[str, int] | None = Field(
        None, description="weighted-interleave: node -> weight 1-255, e.g. { 0 = 3, 2 = 1 }.")
    home_node: int | None = Field(None, description="bind / preferred-many: allocate from this node first.")
    balancing: bool = Field(
        False, description="bind / preferred-many: let kernel NUMA balancing move pages among the nodes "
        "(MPOL_F_NUMA_BALANCING); only for processes started through exec or the shim.")

    @model_validator(mode="after")
    def _valid(self, info: ValidationInfo) -> PolicyTable:
        if self.mode in NODELESS:
            raise ValueError(f"mode {self.mode!r} has nothing to place in a rule; rules take preferred, "
                             "preferred-many, bind, interleave or weighted-interleave")
        spec = self.spec()   # PolicySpecError is a ValueError with the reason
        unsupported = (info.context or {}).get("unsupported_policies") or {}
        if spec.mode in unsupported:
            raise ValueError(unsupported[spec.mode])
        return self

    def spec(self) -> PolicySpec:
        try:
            nodes = parse_nodes(self.nodes) if self.nodes is not None else frozenset()
        except NodeListError as exc:
            raise PolicySpecError(f"nodes: {exc}") from None
        return make_policy(self.mode, nodes, weights=self.weights, home_node=self.home_node,
                           balancing=self.balancing)

    def node_text(self) -> str:
        """The policy's nodes as a node list (the rule's target set)."""
        spec = self.spec()
        return ",".join(str(n) for n in sorted(spec.nodes))


def policy_nodes_as_rule_nodes(data: object) -> object:
    """A rule's raw table with the policy's nodes (or weighted nodes) as its ``nodes``,
    so the planner's node checks, cpuset limits and ``fleet`` apply to them unchanged."""
    if not isinstance(data, dict) or not isinstance(data.get("policy"), dict):
        return data
    if "nodes" in data:
        raise ValueError("give the nodes inside policy (nodes or weights), not also as the rule's nodes")
    weights, nodes = data["policy"].get("weights"), data["policy"].get("nodes")
    text = ",".join(str(k) for k in weights) if isinstance(weights, dict) else nodes
    if not isinstance(text, str):
        return data
    try:
        parse_nodes(text)
    except NodeListError:
        return data  # the policy table's own check says what is wrong
    return {**data, "nodes": text}
