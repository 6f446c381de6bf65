"""The configuration as pydantic v2 models: one model per TOML table.

Every model forbids unknown keys and is strict (TOML already has types, so
``cpus = "yes"`` is a mistake, not a truthy string).  Durations are stored
as float seconds and sizes as int bytes.  Node lists stay strings (as the
user wrote them, normalised) because ``all`` and ``auto`` are resolved
against the machine at plan time; :meth:`Rule.target_nodes` does that.

Validation that needs the machine (does node 3 exist?) reads the set of
online nodes from the pydantic validation context key ``online_nodes``;
without it only the syntax is checked.
"""

from __future__ import annotations

from typing import Literal
from collections.abc import Iterable

from pydantic import (
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .. import defaults
from ..nodes import parse_nodes
from ..selectors import check_selector
from ..stall import DEFAULT_MAX_STALL
from .fields import (  # noqa: F401  (AUTO, ALL, _Model, _short: re-exported, the package's names)
    ALL, AUTO, MAX_BUDGET, MAX_COOLDOWN, MAX_EVERY, MAX_SCAN_INTERVAL, MAX_STALL, _OCTAL_MODE, Duration, Size,
    _at_most, _check_node_list, _check_regex, _Model, _short,
)
from .policy import PolicyTable, policy_nodes_as_rule_nodes
from .tier import DamonSettings, Tier


class DaemonSettings(_Model):
    scan_interval: Duration = Field(10.0, description="Time between two scans of the processes, e.g. \"10s\".")
    budget: Size = Field(
        512 << 20,
        description="Migration budget in bytes moved per second over all processes (\"512MiB\"); 0 = no limit.",
    )
    max_stall: Duration = Field(
        DEFAULT_MAX_STALL,
        description="Longest the pages of one migration syscall may take; batch sizes adapt to stay under it. "
        "The call's fixed cost, which no batch size shortens, is fitted on the last calls and not counted; "
        "one slow call among quick ones does not shrink the batch. The moved process does not stop for a "
        "call; what waits for it is the daemon (a request waiting for its turn, a SIGTERM).",
    )
    cooldown: Duration = Field(
        60.0,
        description="Least time between two actions on the same process. A rule's `every` replaces it for that rule.",
    )
    auto: bool = Field(
        False,
        description="Let rules with nodes = \"auto\" act. When false they only advise (see `numad-py plan`) "
        "unless the rule itself sets auto = true.",
    )
    include: list[str] = Field(
        default_factory=list,
        description="Only processes whose comm matches one of these regexes (full match; a plain name "
        "matches itself) are considered. Empty = all processes.",
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="Processes whose comm matches one of these regexes (full match) are never touched; "
        "exclude wins over include and over every rule.",
    )
    state_dir: str = Field(defaults.STATE_DIR, description="Directory for state kept across restarts.")
    runtime_dir: str = Field(defaults.RUNTIME_DIR, description="Directory for runtime files (node table, pid file).")
    reload_on_change: bool = Field(
        False,
        description="Reload the policy when its files change, checked once per scan (for a Kubernetes ConfigMap, "
        "where nobody sends SIGHUP); a broken file keeps the old rules, as with SIGHUP.",
    )
    damon: DamonSettings = Field(default_factory=DamonSettings, description="DAMON attributes for tier rules.")

    @field_validator("scan_interval", "max_stall")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be longer than zero")
        return value

    @field_validator("scan_interval")
    @classmethod
    def _scan_bound(cls, value: float) -> float:
        return _at_most(value, MAX_SCAN_INTERVAL, "h")

    @field_validator("max_stall")
    @classmethod
    def _stall_bound(cls, value: float) -> float:
        return _at_most(value, MAX_STALL, "s")

    @field_validator("cooldown")
    @classmethod
    def _cooldown_bound(cls, value: float) -> float:
        return _at_most(value, MAX_COOLDOWN, "d")

    @field_validator("budget")
    @classmethod
    def _budget_bound(cls, value: int) -> int:
        if value > MAX_BUDGET:
            raise ValueError(f"must be at most 1TiB per second (0 = no limit), got {value} bytes")
        return value

    @field_validator("include", "exclude")
    @classmethod
    def _regexes(cls, patterns: list[str]) -> list[str]:
        return [_check_regex(p) for p in patterns]


class MetricsSettings(_Model):
    listen: str = Field(
        defaults.DEFAULT_LISTEN,
        description="HOST:PORT (an IPv6 address in brackets: \"[::1]:9816\") for the Prometheus endpoint; "
        "\"\" disables it.",
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        defaults.parse_listen(value)   # the daemon binds with the same parser
        return value


class ControlSettings(_Model):
    socket: str = Field(defaults.CONTROL_SOCKET, description="Path of the control socket.")
    mode: str = Field("0600", description="Permission bits of the control socket, in octal.")
    group: str = Field("", description="Group owning the control socket; \"\" = root only.")

    @field_validator("mode")
    @classmethod
    def _octal(cls, value: str) -> str:
        if not _OCTAL_MODE.match(value):
            raise ValueError(f"expected octal permission bits like \"0660\", got {value!r}")
        return value


class Match(_Model):
    """What a rule applies to; every criterion given must hold (AND)."""

    comm: str | None = Field(None, description="Regex that must fully match the process name (comm, 15 chars).")
    exe: str | None = Field(None, description="Regex that must fully match the executable's path.")
    cmdline: str | None = Field(None, description="Regex searched for in the command line, arguments joined by spaces.")
    user: str | int | None = Field(None, description="User name or numeric uid owning the process.")
    cgroup: str | None = Field(None, description="Glob on the cgroup v2 path, e.g. \"/system.slice/postgresql*\".")
    unit: str | None = Field(None, description="Glob on the systemd unit taken from the cgroup path, e.g. \"nginx.service\".")
    min_rss: Size | None = Field(None, description="Least resident memory, e.g. \"1GiB\".")

    @field_validator("user", mode="before")
    @classmethod
    def _user(cls, value: object) -> str | int | None:
        if value is None or (isinstance(value, (str, int)) and not isinstance(value, bool)):
            return value
        raise ValueError(f"expected a user name or a numeric uid, got {value!r}")

    @field_validator("comm", "exe", "cmdline")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return None if value is None else _check_regex(value)

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in type(self).model_fields)


class Rule(_Model):
    """One ``[[rule]]`` table. The first rule that matches a process wins."""

    name: str = Field("", description="Shown in logs, plans and metrics; defaults to FILESTEM[INDEX].")
    match: Match = Field(default_factory=Match, description="Which processes the rule applies to (at least one criterion).")
    fleet: bool = Field(
        False,
        description="The rule is shared by machines of other shapes: literal nodes this host lacks make the "
        "rule inactive here instead of a config error.",
    )
    nodes: str = Field(
        AUTO,
        description="Target nodes: a list like \"0-3,5\", \"all\", a set that means the same on every machine "
        "(\"cpu\", \"memory-only\", \"fast-tier\", \"slow-tier\"; empty here = rule inactive here), or \"auto\" "
        "(best node by free memory, CPU load and distance; advisory unless enabled).",
    )
    auto: bool = Field(False, description="Let this rule's nodes = \"auto\" act even when [daemon] auto is false.")
    memory: Literal["all"] | list[str] = Field(
        "all",
        description="What to move: \"all\", or a list of mappings: \"[heap]\", \"[stack]\", \"anon\", a file "
        "path glob, a shm name \"/dev/shm/*\", or an address range \"0x1000-0x2000\".",
    )
    every: Duration | None = Field(None, description="Re-enforce this often, pulling back pages that drifted.")
    once: bool = Field(True, description="Act the first time the process is seen.")
    cpus: bool = Field(False, description="Pin the process's threads to the target nodes' CPUs.")
    move_all: bool = Field(False, description="Also move pages shared with other processes (needs CAP_SYS_NICE).")
    numa_balancing: bool | None = Field(
        None,
        description="false = say in plans that this rule wants kernel NUMA balancing kept off its processes. "
        "A running process cannot be opted out from outside: plans say so (turn kernel.numa_balancing off, "
        "or start it through `numad-py exec` with an explicit policy, which balancing leaves alone). Unset = no note.",
    )
    spread_children: str | None = Field(
        None,
        description="Node list the fork-time shim spreads this program's children over, e.g. \"0-3\".",
    )

    # --- memory policy (issue 13): its nodes become `nodes` (see _policy_nodes) ---
    policy: PolicyTable | None = Field(
        None,
        description="Memory policy, e.g. { mode = \"weighted-interleave\", weights = { 0 = 3, 2 = 1 } }: running "
        "processes get their pages moved to match (interleave modes: page i to the weighted round-robin's "
        "node); new allocations follow it only in processes started through exec or the shim.",
    )

    @model_validator(mode="before")
    @classmethod
    def _policy_nodes(cls, data: object) -> object:
        return policy_nodes_as_rule_nodes(data)
    # --- end memory policy ---
    tier: Tier | None = Field(None, description="Tiering by measured access (DAMON): hot ranges fast, cold slow.")

    _source: str = PrivateAttr("")
    _index: int = PrivateAttr(0)

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, value: str, info: ValidationInfo) -> str:
        return _check_node_list(value, info, allow_auto=True)

    @field_validator("spread_children")
    @classmethod
    def _spread(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _check_node_list(value, info, allow_auto=False)

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: object) -> str | list[str]:
        # Before-mode so a wrong type gets this message, not one per union member.
        if value == ALL:
            return ALL
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected \"all\" or a list of mapping selectors, got {value!r}")
        if not value:
            raise ValueError("empty list: say \"all\" or name at least one mapping")
        for selector in value:
            check_selector(selector)   # InvalidArgument is a ValueError with the reason
        return value

    @field_validator("every")
    @classmethod
    def _every(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be longer than zero")
        return None if value is None else _at_most(value, MAX_EVERY, "d")

    @model_validator(mode="after")
    def _coherent(self) -> Rule:
        if self.match.is_empty():
            raise ValueError("match needs at least one of comm, exe, cmdline, user, cgroup, unit, min_rss")
        if not self.once and self.every is None:
            raise ValueError("the rule would never act: keep once = true or set every")
        if self.auto and self.nodes != AUTO:
            raise ValueError("auto = true only applies to nodes = \"auto\"")
        if self.tier is not None and (self.nodes != AUTO or self.cpus):
            raise ValueError("a tier rule places by tier.fast and tier.slow: drop nodes and cpus")
        return self

    @property
    def source(self) -> str:
        """The file this rule came from ("" when built in code)."""
        return self._source

    @property
    def index(self) -> int:
        """Position among the ``[[rule]]`` tables of its own file, from 0."""
        return self._index

    def located(self, source: str, index: int) -> Rule:
        """A copy that knows where it was written (for messages)."""
        copy = self.model_copy()
        copy._source, copy._index = source, index
        return copy

    def target_nodes(self, all_nodes: Iterable[int]) -> frozenset[int] | None:
        """The literal target node set; None for ``auto``; ValueError for a set like ``cpu``."""
        return None if self.nodes == AUTO else parse_nodes(self.nodes, all_nodes=all_nodes)

    def is_auto_enabled(self, daemon: DaemonSettings) -> bool:
        return self.nodes == AUTO and (self.auto or daemon.auto)


class ConfigFile(_Model):
    """The layout of one TOML file; rules.d files may hold only ``[[rule]]`` tables."""

    daemon: DaemonSettings = Field(default_factory=DaemonSettings, description="Daemon settings.")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings, description="Prometheus endpoint.")
    control: ControlSettings = Field(default_factory=ControlSettings, description="Control socket.")
    rule: list[Rule] = Field(default_factory=list, description="Placement rules, in order.")


class Config(_Model):
    """The whole configuration: the main file's settings and every rule in order."""

    daemon: DaemonSettings = Field(default_factory=DaemonSettings, description="Daemon settings.")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings, description="Prometheus endpoint.")
    control: ControlSettings = Field(default_factory=ControlSettings, description="Control socket.")
    rules: list[Rule] = Field(
        default_factory=list,
        description="Rules from the main file, then rules.d/*.toml in lexical order; first match wins.",
    )
    files: list[str] = Field(default_factory=list, description="The files read, in order.")
