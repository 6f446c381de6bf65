"""The ``numad-py`` command.

Each subcommand is a small function; bad input ends with a one-line error
and exit code 2, a failure of the action itself with exit code 1.
"""

from __future__ import annotations

import os

from ..units import format_size
from ..nodes import NodeListError, format_nodes, parse_nodes

TYPE_CHECKING = False  # collections.abc imports collections: a light command's start-up pays it
if TYPE_CHECKING:
    from collections.abc import Callable

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_NOT_RUNNING = 3  # status: no daemon runs (systemctl status's code)


class UsageError(Exception):
    """Bad command-line input: exit code 2."""


def _emit(args, data, text: Callable[[], str]) -> None:
    if not getattr(args, "json", False):
        print(text())
        return
    import json
    print(json.dumps(data, indent=2, sort_keys=True))


def _pid(text: str) -> int:
    """A pid that names a live process right now (it may still exit later)."""
    from ..units import parse_pid   # ASCII digits only: int() also takes "１２" and "²"
    pid = parse_pid(text)
    if not os.path.exists(f"/proc/{pid}"):
        raise UsageError(f"no process with pid {pid}")
    return pid


def _node_list(text: str) -> frozenset[int]:
    from ..topology import online_nodes
    try:
        return parse_nodes(text, all_nodes=online_nodes())
    except NodeListError as exc:
        raise UsageError(f"bad node list: {exc}") from None


def _target_nodes(text: str) -> frozenset[int]:
    """A node list whose nodes exist and have memory: checked before any pid or privilege."""
    from ..topology import read_topology
    nodes = _node_list(text)
    topo = read_topology()
    if not nodes:
        raise UsageError("empty node list")
    if nodes - topo.node_ids:
        raise UsageError(f"node {format_nodes(nodes - topo.node_ids)} does not exist "
                         f"(online nodes: {format_nodes(topo.node_ids)})")
    if nodes - topo.memory_nodes:
        raise UsageError(f"node {format_nodes(nodes - topo.memory_nodes)} has no memory")
    return nodes


def _non_empty(option: str, value: str | None) -> str | None:
    """An option given as '' is a mistake, not "everything"."""
    if value is not None and not value.strip():
        raise UsageError(f"{option} is empty")
    return value


# --- topology --------------------------------------------------------------

def cmd_topology(args) -> int:
    from ..topology import read_topology
    # sys_root: tests hand a literal sysfs tree; the parser has no such option.
    topo = read_topology(getattr(args, "sys_root", None) or "/sys")

    def access_text(node_id: int) -> str:
        a = topo.access.get(node_id)
        if a is None:
            return ""

        def pair(read, write, unit):
            return "?" if read is None and write is None else f"{read}/{write} {unit}"
        return (f"; from node(s) {format_nodes(a.initiators) or '-'}: latency r/w "
                f"{pair(a.read_latency_ns, a.write_latency_ns, 'ns')}, bandwidth r/w "
                f"{pair(a.read_bandwidth_mib_s, a.write_bandwidth_mib_s, 'MiB/s')}")

    def text() -> str:
        ids = sorted(topo.node_ids)
        lines = [f"{len(ids)} node(s): {format_nodes(ids)}"]
        for n in topo.nodes:
            kind = " (memory only)" if n.has_memory and not n.has_cpu else ""
            tier = topo.tier_of(n.id)
            lines.append(f"node {n.id}: cpus {format_nodes(n.cpus) or '-'}; "
                         f"memory {format_size(n.mem_total)}, free {format_size(n.mem_free)}{kind}"
                         + (f"; tier {tier}" if tier is not None else "") + access_text(n.id))
        if topo.tiers:
            lines.append("memory tiers (fastest first): "
                         + "; ".join(f"tier {t}: {format_nodes(nodes)}" for t, nodes in topo.memory_tiers))
        lines.append("distances: " + "  ".join(f"{i:>4}" for i in ids))
        for a in ids:
            lines.append(f"{a:>9}: " + "  ".join(f"{topo.distances[(a, b)]:>4}" for b in ids))
        return "\n".join(lines)

    _emit(args, topo.to_dict(), text)
    return EXIT_OK


# --- show ------------------------------------------------------------------

def cmd_show(args) -> int:
    from ..sense.maps import process_residency, read_maps, read_numa_maps

    _non_empty("--range", args.range)
    pid = _pid(args.pid)
    if args.range is not None:   # "" is a bad range, not "everything"
        from ..numa import range_residency   # the cffi binding: only for a range
        from ..selectors import parse_range
        start, end = parse_range(args.range)
        res = range_residency(pid, start, end)
        data = {"pid": pid, "range": args.range, "nodes": res["nodes"], "other": res["other"]}
        _emit(args, data, lambda: _residency_text(f"pid {pid} range {args.range}", res["nodes"], res["other"]))
        return EXIT_OK
    if args.maps:
        per_start = dict(read_numa_maps(pid))
        rows = [(m, per_start.get(m.start, {})) for m in read_maps(pid)]
        data = {"pid": pid, "mappings": [{"start": f"{m.start:x}", "end": f"{m.end:x}", "mapping": m.label(),
                                          "nodes": nodes} for m, nodes in rows]}
        _emit(args, data, lambda: "\n".join(
            f"{m.start:x}-{m.end:x} {m.label()}: "
            + (", ".join(f"N{n}={format_size(b)}" for n, b in sorted(nodes.items())) or "nothing resident")
            for m, nodes in rows))
        return EXIT_OK
    nodes = process_residency(pid)
    _emit(args, {"pid": pid, "nodes": nodes, "total": sum(nodes.values())},
          lambda: _residency_text(f"pid {pid}", nodes, {}))
    return EXIT_OK


def _residency_text(title: str, nodes: dict[int, int], other: dict[str, int]) -> str:
    total = sum(nodes.values())
    lines = [f"{title}: {format_size(total)} resident"]
    for node, nbytes in sorted(nodes.items()):
        share = 100.0 * nbytes / total if total else 0.0
        lines.append(f"  node {node}: {format_size(nbytes)} ({share:.1f}%)")
    for reason, nbytes in sorted(other.items()):
        lines.append(f"  {reason}: {format_size(nbytes)}")
    return "\n".join(lines)


# --- migrate ---------------------------------------------------------------

def _spread_policy(text: str):
    """``--policy``: an interleave policy (page i to its node), checked like ``--to``."""
    from ..policyspec import PolicySpecError, parse_policy
    try:
        spec = parse_policy(text)
    except PolicySpecError as exc:
        raise UsageError(f"--policy: {exc}") from None
    if not spec.spreads_pages():
        raise UsageError(f"--policy {spec.mode}: use --to for a node set; --policy takes "
                         "interleave or weighted-interleave")
    _target_nodes(format_nodes(spec.nodes))
    return spec


def cmd_migrate(args) -> int:
    from ..numa import migrate_ranges
    from ..numa.place import place_ranges
    from ..selectors import parse_range, select_mappings
    from ..sense.maps import read_maps

    _non_empty("--range", args.range)
    _non_empty("--mapping", args.mapping)
    if (args.to is None) == (args.policy is None):
        raise UsageError("give --to NODES or --policy 'interleave NODES' / 'weighted-interleave N:W,...'")
    spec = _spread_policy(args.policy) if args.policy is not None else None
    target = spec.nodes if spec is not None else _target_nodes(args.to)
    if args.via_daemon:
        from .requests import migrate_via_daemon
        return migrate_via_daemon(args)
    pid = _pid(args.pid)
    if args.range is not None:   # "" is a bad range, not "everything"
        start, end = parse_range(args.range)
        if not any(m.start < end and start < m.end for m in read_maps(pid)):
            raise UsageError(f"range {args.range} is not mapped in pid {pid} (see /proc/{pid}/maps)")
        ranges = [(start, end)]
    else:
        selected = select_mappings(read_maps(pid), "all" if args.mapping is None else args.mapping)
        if args.mapping and not selected:
            raise UsageError(f"pid {pid} has no mapping {args.mapping!r} "
                             "(use [heap], [stack], anon, or a path from /proc/PID/maps)")
        ranges = [(m.start, m.end) for m in selected]
    if spec is not None:
        result = place_ranges(pid, ranges, spec.weight_map(), move_all=args.all, batch_pages=args.batch)
    else:
        result = migrate_ranges(pid, ranges, target, move_all=args.all, batch_pages=args.batch,
                                count_huge_pages=True)
    data = result.to_dict()

    def text() -> str:
        failed = ", ".join(f"{k} {v}" for k, v in sorted(result.failed.items())) or "none"
        return (f"pid {pid} -> {spec.text() if spec is not None else 'node ' + format_nodes(target)}: "
                f"moved {result.moved} pages "
                f"({format_size(result.bytes_moved)}) in {result.seconds:.3f} s, "
                f"{result.already} already there, {result.not_present} not present, "
                f"failed: {failed}; longest call {result.longest_call_seconds * 1000:.1f} ms"
                + (f"; {result.huge_pages} huge pages in range" if result.huge_pages else ""))

    _emit(args, data, text)
    return EXIT_OK


# --- daemon ----------------------------------------------------------------

def cmd_run(args) -> int:
    from ..daemon.main import run_main
    return run_main(args.config, dry_run=args.dry_run, once=args.once, verbose=args.verbose,
                    detach=args.daemon, pidfile=args.pidfile)


def cmd_check_config(args) -> int:
    from .config_cmds import check_config_main
    return check_config_main(args.config or args.config_path)


def cmd_plan(args) -> int:
    from .config_cmds import plan_main
    return plan_main(args.config, args.json)


def cmd_drain(args) -> int:
    from .requests import drain_main
    return drain_main(args)


def cmd_status(args) -> int:
    from .requests import socket_path_for, status_via_socket
    from .status_file import daemon_state, read_status

    # systemctl's convention: 0 running, 3 not running.
    socket_path = socket_path_for(args)
    data = status_via_socket(socket_path)
    note = ""
    if data is None:
        data = read_status(args.runtime_dir)
        state = daemon_state(data)
        if state != "running":
            if args.json:
                import json
                print(json.dumps({"running": False, "reason": state, "last_status": data}, indent=2))
            else:
                print(f"numad-py is not running: {state}")
            return EXIT_NOT_RUNNING
        note = f"(control socket {socket_path} does not answer; from {data['_path']})"
    data["running"] = True

    def text() -> str:
        lines = [f"numad-py pid {data['pid']}: running, {data['ticks']} tick(s), config {data['config']}"
                 + (" (dry-run)" if data.get("dry_run") else "")]
        if note:
            lines.append(note)
        lines.append("rules: " + (", ".join(data["rules"]) or "none"))
        for rule, count in sorted(data["managed"].items()):
            lines.append(f"  {rule}: {count} process(es)")
        for o in data["recent"][-10:]:
            lines.append(f"  {o['kind']} pid {o['pid']} ({o['comm']}) rule {o['rule']} -> "
                         f"{o['target']}: {o['status']} {o['message']}".rstrip())
        lines.extend(f"error: {e}" for e in data["errors"][-5:])
        return "\n".join(lines)

    _emit(args, data, text)
    return EXIT_OK


# --- fork-time placement ---------------------------------------------------

def cmd_advise(args) -> int:
    from .advise_cmd import advise_main
    from .requests import socket_path_for
    return advise_main(args.cpus, args.memory, args.json, socket_path_for(args))


def cmd_shim_path(args) -> int:
    from ..shim import shim_path
    print(shim_path())
    return EXIT_OK
