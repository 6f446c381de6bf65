"""The ``numad-py`` command.

Each subcommand is a small function; bad input ends with a one-line error
and exit code 2, a failure of the action itself with exit code 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from ..defaults import CONFIG_PATH as DEFAULT_CONFIG
from ..errors import InvalidArgument, InvalidNode, NumaError, PermissionDenied, ProcessGone
from ..units import format_size
from ..nodes import NodeListError, format_nodes, parse_nodes
from .light_argparse import ArgumentParser

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
    from ..selectors import parse_pid   # ASCII digits only: int() also takes "１２" and "²"
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
    from ..sense.maps import parse_range, process_residency, read_maps, read_numa_maps

    _non_empty("--range", args.range)
    pid = _pid(args.pid)
    if args.range is not None:   # "" is a bad range, not "everything"
        from ..numa import range_residency   # the cffi binding: only for a range
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
    from ..sense.maps import parse_range, read_maps, select_mappings

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
        result = migrate_ranges(pid, ranges, target, move_all=args.all, batch_pages=args.batch)
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


# --- wiring ----------------------------------------------------------------

# Kept here, not next to the control client: building the parser must not
# import the client and its pydantic protocol (seconds under emulation).
from ..defaults import CONTROL_SOCKET as DEFAULT_SOCKET  # noqa: E402  (written once)


def _count(text: str) -> int:
    """argparse type for node numbers and batch sizes: ASCII digits only (int() takes "１２")."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def add_via_daemon_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--via-daemon", action="store_true",
                        help="ask the running daemon (its socket) instead of migrating from this "
                             "process; the way an unprivileged user moves its own processes")
    parser.add_argument("--socket", metavar="PATH", default=None,
                        help=f"control socket (default: $NUMAD_PY_SOCKET, the config's [control] socket, "
                             f"or {DEFAULT_SOCKET})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_drain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", type=_count, required=True, metavar="N", help="the node to empty")
    parser.add_argument("--to", metavar="NODES", default=None,
                        help="target nodes (default: every other memory node, nearest first)")
    parser.add_argument("--all", action="store_true",
                        help="move-all: also pages shared with other processes")
    parser.add_argument("--socket", metavar="PATH", default=None, help="control socket")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result object")


def _topology_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_topology)


def _show_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pid")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--range", metavar="START-END", help="hex address range, as in /proc/PID/maps")
    g.add_argument("--maps", action="store_true", help="per mapping")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)


def _migrate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pid")
    p.add_argument("--to", metavar="NODES", help="target nodes, e.g. 1 or 0-1")
    p.add_argument("--policy", metavar="TEXT", help="instead of --to, an interleave policy: page i to its "
                   "node, e.g. 'interleave 0-1' or 'weighted-interleave 0:3,1:1'")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--range", metavar="START-END", help="hex address range")
    g.add_argument("--mapping", metavar="NAME", help="[heap], [stack], anon, or a path from /proc/PID/maps")
    p.add_argument("--all", action="store_true", help="move-all: also pages shared with other processes")
    p.add_argument("--batch", type=_count, default=4096, metavar="PAGES", help="pages per move_pages call")
    p.add_argument("--json", action="store_true")
    add_via_daemon_arguments(p)
    p.set_defaults(func=cmd_migrate)


def _drain_args(p: argparse.ArgumentParser) -> None:
    add_drain_arguments(p)
    p.set_defaults(func=cmd_drain)


def _exec_args(p: argparse.ArgumentParser) -> None:
    from .exec_cmd import add_exec_arguments, cmd_exec
    add_exec_arguments(p)
    p.set_defaults(func=cmd_exec)


def _weights_args(p: argparse.ArgumentParser) -> None:
    from .weights_cmd import add_weights_arguments
    add_weights_arguments(p)


def _advise_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cpus", required=True, metavar="N")
    p.add_argument("--memory", metavar="SIZE", help='e.g. 512MiB, 2GiB, or bytes')
    p.add_argument("--json", action="store_true", help="the node set with the reasons")
    p.add_argument("--socket", metavar="PATH", help="the daemon's control socket (asked first; "
                   "without a daemon the advice is computed here)")
    p.set_defaults(func=cmd_advise)


def _shim_path_args(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=cmd_shim_path)


def _shim_args(p: argparse.ArgumentParser) -> None:
    from .shim_cmd import add_shim_arguments
    add_shim_arguments(p)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH")
    p.add_argument("--once", action="store_true", help="one scan, then exit")
    p.add_argument("--dry-run", action="store_true", help="log what would be done, change nothing")
    p.add_argument("--daemon", action="store_true", help="detach (outside systemd)")
    p.add_argument("--pidfile", metavar="PATH")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_run)


def _check_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config_path", nargs="?", default=None, metavar="PATH")
    p.add_argument("--config", default=None, metavar="PATH")
    p.set_defaults(func=cmd_check_config)


def _plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime-dir", default=None, metavar="DIR")
    p.add_argument("--socket", default=None, metavar="PATH")
    p.add_argument("--config", default=None, metavar="PATH")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)


# name, the line in `numad-py --help`, and what adds the command's arguments.
COMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None]], ...] = (
    ("topology", "nodes, CPUs, memory, distances", _topology_args),
    ("show", "resident bytes per node of a process", _show_args),
    ("migrate", "move a process's pages to nodes, now, from this process", _migrate_args),
    ("drain", "move every movable page off a node (via the daemon)", _drain_args),
    ("exec", "run a command under a memory policy, or with its children placed at fork", _exec_args),
    ("weights", "show or set the machine's weighted-interleave weights", _weights_args),
    ("advise", "where a new workload of N CPUs (and SIZE memory) fits best now", _advise_args),
    ("shim-path", "path of the LD_PRELOAD shim", _shim_path_args),
    ("shim", "the shim system-wide: install-system, uninstall-system", _shim_args),
    ("run", "the daemon: enforce the policy rules", _run_args),
    ("check-config", "validate the policy files; exit 1 with FILE:LINE errors", _check_config_args),
    ("plan", "what the rules would do on this machine now, with reasons", _plan_args),
    ("status", "what the running daemon is doing", _status_args),
)


def command_named(argv: list[str]) -> str | None:
    """The subcommand in ``argv``: its first word that is not an option (the top
    level has no options of its own but ``-h``)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``numad-py`` parser.  With ``only``, every command is listed (for
    ``--help`` and for the "invalid choice" error) but only that one gets its
    arguments: building all of them is most of a light command's start-up."""
    parser = ArgumentParser(prog="numad-py", description="NUMA placement daemon and tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, add_arguments in COMMANDS:
        p = sub.add_parser(name, help=help_text)
        if only is None or only == name:
            add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(only=command_named(argv))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, InvalidArgument, InvalidNode) as exc:
        print(f"numad-py {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ProcessGone as exc:
        # The pid was checked on entry, so it exited while we worked on it.
        print(f"numad-py {args.command}: {exc}: it exited while numad-py was working on it; "
              "nothing is left to do", file=sys.stderr)
        return EXIT_FAILED
    except PermissionDenied as exc:
        print(f"numad-py {args.command}: permission denied: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except NumaError as exc:
        print(f"numad-py {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        return EXIT_FAILED

