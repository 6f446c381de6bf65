"""`numad-py check-config` and `numad-py plan`: the config and the advisory plan, for people."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from ..decide.planner import plan
from ..nodes import format_nodes
from ..sense.processes import take_snapshot
from ..topology import NODE_DIR, online_nodes


def _online_nodes(sys_root: str = "/sys") -> frozenset[int] | None:
    """This machine's nodes, or None on a kernel without NUMA (node checks then skipped)."""
    if not (Path(sys_root) / NODE_DIR / "online").exists():
        return None
    return online_nodes(sys_root)


def _unsupported_policies() -> dict[str, str] | None:
    """Policy modes this kernel lacks (a rule naming one is an error here); None without NUMA."""
    if _online_nodes() is None:
        return None
    from ..numa.policy import unsupported_modes
    return unsupported_modes()


def _load(config_path: str | None) -> Config | None:
    """The config, or None after printing each problem to stderr."""
    path = Path(config_path) if config_path else DEFAULT_CONFIG_PATH
    try:
        return load_config(path, online_nodes=_online_nodes(), unsupported_policies=_unsupported_policies())
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def check_config_main(config_path: str | None) -> int:
    config = _load(config_path)
    if config is None:
        return 1
    print(f"OK: {len(config.rules)} rules from {', '.join(config.files)}")
    if config.rules and _online_nodes() is not None:
        from ..decide.planner import inactive_rules
        from ..sense.node_load import node_snapshot
        from dataclasses import replace
        from ..sense.damon import missing_reason
        snapshot = replace(node_snapshot(sample_seconds=0), access_missing=missing_reason())
        inactive = inactive_rules(config.rules, snapshot)
        for rule in config.rules:
            print(f"  {rule.name}: {inactive.get(rule.name, 'active here')} (nodes = {rule.nodes!r})")
    return 0


def plan_main(config_path: str | None, as_json: bool) -> int:
    config = _load(config_path)
    if config is None:
        return 1
    if any(rule.tier is not None for rule in config.rules):
        measured = _daemon_plan(config)   # DAMON's measurements live in the running daemon
        if measured is not None:
            return _print_daemon_plan(measured, as_json)
    snapshot = _with_damon(take_snapshot(config))
    result = plan(snapshot, config, {})
    if as_json:
        print(json.dumps([action.to_dict() for action in result], indent=2))
        return 0
    for action in result:
        moves = f"{format_nodes(action.from_nodes) or '-'} -> {format_nodes(action.target_nodes) or '-'}"
        print(f"{action.kind:<7} pid {action.pid} ({action.comm}) [{moves}]: {action.reason}")
    for name, why in sorted(result.inactive.items()):
        print(f"rule {name!r} is {why}")
    if not result.actions:
        print(f"nothing to do: {len(result.matched)} matching process(es), all placed")
    return 0


# --- tier rules: the running daemon holds DAMON's measurements ---------------------

def _with_damon(snapshot):
    from dataclasses import replace
    from ..sense.damon import missing_reason
    return replace(snapshot, access_missing=missing_reason())


def _daemon_plan(config: Config) -> list[dict] | None:
    """The running daemon's plan (its tier moves carry the measured access), or None."""
    from ..client import Client, DaemonError, DaemonUnavailable
    try:
        return list(Client(config.control.socket, timeout=30, connect_timeout=2).plan()["actions"])
    except (DaemonError, DaemonUnavailable, OSError, KeyError, TypeError):
        return None


def _print_daemon_plan(actions: list[dict], as_json: bool) -> int:
    if as_json:
        print(json.dumps(actions, indent=2))
        return 0
    print("plan of the running daemon (tier rules need its DAMON measurements):")
    for a in actions:
        print(f"{a['kind']:<7} pid {a['pid']} ({a['comm']}) [{a['from_nodes'] or '-'} -> "
              f"{a['target_nodes'] or '-'}]: {a['reason']}")
    if not actions:
        print("nothing to do")
    return 0
