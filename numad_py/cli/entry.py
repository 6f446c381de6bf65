"""The ``numad-py`` entry point: the parser, built per command, and the exit codes.

Each command's arguments are added by a small function in :data:`COMMANDS`;
the commands themselves live in :mod:`.commands` (and the modules it names).
Building the parser imports neither the control client nor pydantic
(seconds under emulation): the light commands stay light.
"""

from __future__ import annotations

import sys

from ..defaults import CONFIG_PATH as DEFAULT_CONFIG
from ..defaults import CONTROL_SOCKET as DEFAULT_SOCKET
from ..errors import InvalidArgument, InvalidNode, NumaError, PermissionDenied, ProcessGone
from .commands import (EXIT_FAILED, EXIT_USAGE, UsageError, cmd_advise, cmd_check_config, cmd_drain,
                       cmd_migrate, cmd_plan, cmd_run, cmd_shim_path, cmd_show, cmd_status, cmd_topology)
from .argv import ArgumentParser, ArgumentTypeError

TYPE_CHECKING = False  # collections.abc imports collections: a light command's start-up pays it
if TYPE_CHECKING:
    from collections.abc import Callable


def _count(text: str) -> int:
    """The ``type`` for node numbers and batch sizes: ASCII digits only (int() takes "１２")."""
    if not (text.isascii() and text.isdigit()):
        raise ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def add_via_daemon_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--via-daemon", action="store_true",
                        help="ask the running daemon (its socket) instead of migrating from this "
                             "process; the way an unprivileged user moves its own processes")
    parser.add_argument("--socket", metavar="PATH", default=None,
                        help=f"control socket (default: $NUMAD_PY_SOCKET, the config's [control] socket, "
                             f"or {DEFAULT_SOCKET})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_drain_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--node", type=_count, required=True, metavar="N", help="the node to empty")
    parser.add_argument("--to", metavar="NODES", default=None,
                        help="target nodes (default: every other memory node, nearest first)")
    parser.add_argument("--all", action="store_true",
                        help="move-all: also pages shared with other processes")
    parser.add_argument("--socket", metavar="PATH", default=None, help="control socket")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result object")


def _topology_args(p: ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_topology)


def _show_args(p: ArgumentParser) -> None:
    p.add_argument("pid")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--range", metavar="START-END", help="hex address range, as in /proc/PID/maps")
    g.add_argument("--maps", action="store_true", help="per mapping")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)


def _migrate_args(p: ArgumentParser) -> None:
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


def _drain_args(p: ArgumentParser) -> None:
    add_drain_arguments(p)
    p.set_defaults(func=cmd_drain)


def _deferred(module: str, adder: str) -> Callable[[ArgumentParser], None]:
    """``module.adder`` (which also sets the command's ``func``), imported only when its
    command is the one being parsed."""
    def add_arguments(p: ArgumentParser) -> None:
        import importlib      # here: its import of warnings is start-up the light commands skip
        getattr(importlib.import_module(module, __package__), adder)(p)
    return add_arguments


def _advise_args(p: ArgumentParser) -> None:
    p.add_argument("--cpus", required=True, metavar="N")
    p.add_argument("--memory", metavar="SIZE", help='e.g. 512MiB, 2GiB, or bytes')
    p.add_argument("--json", action="store_true", help="the node set with the reasons")
    p.add_argument("--socket", metavar="PATH", help="the daemon's control socket (asked first; "
                   "without a daemon the advice is computed here)")
    p.set_defaults(func=cmd_advise)


def _shim_path_args(p: ArgumentParser) -> None:
    p.set_defaults(func=cmd_shim_path)


def _run_args(p: ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH")
    p.add_argument("--once", action="store_true", help="one scan, then exit")
    p.add_argument("--dry-run", action="store_true", help="log what would be done, change nothing")
    p.add_argument("--daemon", action="store_true", help="detach (outside systemd)")
    p.add_argument("--pidfile", metavar="PATH")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_run)


def _check_config_args(p: ArgumentParser) -> None:
    p.add_argument("config_path", nargs="?", default=None, metavar="PATH")
    p.add_argument("--config", default=None, metavar="PATH")
    p.set_defaults(func=cmd_check_config)


def _plan_args(p: ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)


def _status_args(p: ArgumentParser) -> None:
    p.add_argument("--runtime-dir", default=None, metavar="DIR")
    p.add_argument("--socket", default=None, metavar="PATH")
    p.add_argument("--config", default=None, metavar="PATH")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)


# name, the line in `numad-py --help`, and what adds the command's arguments.
COMMANDS: tuple[tuple[str, str, Callable[[ArgumentParser], None]], ...] = (
    ("topology", "nodes, CPUs, memory, distances", _topology_args),
    ("show", "resident bytes per node of a process", _show_args),
    ("migrate", "move a process's pages to nodes, now, from this process", _migrate_args),
    ("drain", "move every movable page off a node (via the daemon)", _drain_args),
    ("exec", "run a command under a memory policy, or with its children placed at fork",
     _deferred(".exec_cmd", "add_exec_arguments")),
    ("weights", "show or set the machine's weighted-interleave weights",
     _deferred(".weights_cmd", "add_weights_arguments")),
    ("advise", "where a new workload of N CPUs (and SIZE memory) fits best now", _advise_args),
    ("shim-path", "path of the LD_PRELOAD shim", _shim_path_args),
    ("shim", "the shim system-wide: install-system, uninstall-system", _deferred(".shim_cmd", "add_shim_arguments")),
    ("run", "the daemon: enforce the policy rules", _run_args),
    ("check-config", "validate the policy files; exit 1 with FILE:LINE errors", _check_config_args),
    ("plan", "what the rules would do on this machine now, with reasons", _plan_args),
    ("status", "what the running daemon is doing", _status_args),
)


def command_named(argv: list[str]) -> str | None:
    """The subcommand in ``argv``: its first word that is not an option (the top
    level has no options of its own but ``-h``)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(only: str | None = None) -> ArgumentParser:
    """The ``numad-py`` parser.  With ``only``, every command is listed (for
    ``--help`` and for the "invalid choice" error) but only that one gets its
    arguments: a light command need not pay for building every other one (nor
    import the modules of ``exec``, ``weights`` and ``shim``)."""
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
    # No command named (``numad-py --help``): the list of commands, none of their arguments.
    parser = build_parser(only=command_named(argv) or "")
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
