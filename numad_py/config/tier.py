"""A rule's ``tier = { fast = ..., slow = ... }`` table and the daemon's DAMON settings (issue 14):
DAMON-measured hot/cold placement."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from ..nodes import NODE_SETS, format_nodes, parse_nodes
from .fields import ALL, MAX_COOLDOWN, Duration, _at_most, _check_node_list, _Model, _short


def _parse_share(value: object) -> float:
    """``"5%"`` -> 0.05; a TOML float 0.05 is taken as is; 0..1."""
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,3}(\.[0-9]{1,6})?\s*%\s*", value):
        share = float(value.strip().rstrip("%")) / 100
    elif isinstance(value, float) and not isinstance(value, bool):
        share = value
    else:
        raise ValueError(f"expected a percentage like \"5%\", got {_short(str(value))}")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"must be between 0% and 100%, got {value!r}")
    return share


Share = Annotated[float, BeforeValidator(_parse_share)]
MAX_DAMON_INTERVAL = 60.0


class DamonSettings(_Model):
    """DAMON monitoring attributes of the daemon's one kdamond context (tier rules only)."""

    sample: Duration = Field(0.005, description="Sampling interval: how often one page per region is checked.")
    aggregate: Duration = Field(0.1, description="Aggregation interval: access counts are summed over it.")
    update: Duration = Field(1.0, description="How often DAMON re-reads the processes' address spaces.")
    # DAMON starts each process at min_regions regions and never merges two above (size of all it
    # monitors / min_regions): 100 keeps a region, and so the edge error of a move, near 1 % of what
    # is tiered (10, DAMON's own default, let 35 MiB regions straddle a 16 MiB hot range in the
    # tiered guest and promote its cold neighbours with it).
    min_regions: int = Field(100, ge=3, le=100000, description="Least number of regions DAMON tracks per process.")
    max_regions: int = Field(1000, ge=3, le=100000, description="Most regions DAMON tracks per process.")

    @field_validator("sample", "aggregate", "update")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value < 0.0001:
            raise ValueError("must be at least 100us")
        return _at_most(value, MAX_DAMON_INTERVAL, "s")

    @model_validator(mode="after")
    def _ordered(self) -> DamonSettings:
        if self.aggregate < self.sample:
            raise ValueError("aggregate must be at least sample")
        if self.max_regions < self.min_regions:
            raise ValueError("max_regions must be at least min_regions")
        return self


class Tier(_Model):
    """``tier = { fast = "0-1", slow = "2" }``: hot ranges on fast nodes, cold ones on slow nodes."""

    fast: str = Field(description="Nodes for hot memory (the one the process runs on is used), e.g. \"0-1\" or \"cpu\".")
    slow: str = Field(description="Nodes for cold memory, e.g. \"2\" or \"slow-tier\".")
    cold_after: Duration = Field(30.0, description="A range not accessed this long is cold: it moves to slow.")
    hot_min: Share = Field(0.05, description="A range sampled as accessed at least this share of the time is hot.")
    max_slow_share: Share = Field(0.8, description="At most this share of the process's memory sits on slow nodes.")
    dwell: Duration = Field(10.0, description="A range moved one way is not moved back sooner than this (no ping-pong).")

    @field_validator("fast", "slow")
    @classmethod
    def _node_list(cls, value: str, info: ValidationInfo) -> str:
        return _check_node_list(value, info, allow_auto=False)

    @field_validator("cold_after", "dwell")
    @classmethod
    def _tier_durations(cls, value: float) -> float:
        return _at_most(value, MAX_COOLDOWN, "d")

    @model_validator(mode="after")
    def _disjoint(self) -> Tier:
        if self.fast == self.slow:
            raise ValueError("fast and slow name the same nodes")
        literal = not {self.fast, self.slow} & (set(NODE_SETS) | {ALL})
        if literal and parse_nodes(self.fast) & parse_nodes(self.slow):
            raise ValueError(f"fast and slow share node {format_nodes(parse_nodes(self.fast) & parse_nodes(self.slow))}")
        return self
