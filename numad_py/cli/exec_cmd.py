"""``numad-py exec``: run a command under a memory policy, with the fork-time shim preloaded.

Two ways to place, one of them per call:

* a policy for the program itself — ``--node N`` (the ``--mode`` policy on N),
  or the full vocabulary of :mod:`numad_py.policyspec`: ``--preferred N``,
  ``--preferred-many NODES``, ``--bind NODES``, ``--interleave NODES``,
  ``--weighted-interleave 0:3,1:1``, ``--local``, ``--default``, or ``--policy
  TEXT``.  Set before exec (a policy survives exec); every child inherits it
  at fork.  ``--home-node N`` (bind / preferred-many) and ``--balancing`` add
  to it.
* ``--spread NODES`` / ``--least-loaded NODES``: the program's direct
  children are placed by the shim (round-robin / most free memory).

Weighted interleave takes its weights from the machine's one table
(/sys/kernel/mm/mempolicy/weighted_interleave); exec writes the asked
weights there (root only, and system-wide: said on stderr) unless they are
already set.  ``--home-node`` acts through the shim: the kernel takes a home
node only for address ranges, so the shim gives each anonymous mmap() the
policy and its home node (memory glibc's malloc maps internally follows the
policy alone).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..nodes import NodeListError, format_nodes, parse_nodes
from .argv import REMAINDER, ArgumentParser, Namespace

# The parser is built for every command: the vocabulary (and typing) load when exec runs.
TYPE_CHECKING = False  # mypy reads this name as true
if TYPE_CHECKING:
    from ..policyspec import PolicySpec

PROG = "numad-py exec"
# option -> mode of the vocabulary; each takes its mode's argument
POLICY_OPTIONS = {"--preferred": "preferred", "--preferred-many": "preferred-many", "--bind": "bind",
                  "--interleave": "interleave", "--weighted-interleave": "weighted-interleave"}


class ExecUsage(Exception):
    """Bad exec input: one line, exit code 2."""


def add_exec_arguments(p: ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--node", metavar="N", help="the program and its children on node N (policy --mode)")
    g.add_argument("--spread", metavar="NODES", help="children round-robin over NODES")
    g.add_argument("--least-loaded", metavar="NODES", help="each child on the node of NODES with most free memory")
    for option, mode in POLICY_OPTIONS.items():
        what = "NODE:W,..." if mode == "weighted-interleave" else ("N" if mode == "preferred" else "NODES")
        g.add_argument(option, metavar=what, dest=mode.replace("-", "_"),
                       help=f"the program and its children under the {mode} policy")
    g.add_argument("--local", action="store_true", help="local allocation (the node of the CPU)")
    g.add_argument("--default", action="store_true", help="the default policy (undo an inherited one)")
    g.add_argument("--policy", metavar="TEXT", help='the whole policy as text, e.g. "bind 0-1 home-node 1"')
    p.add_argument("--home-node", metavar="N", help="bind / preferred-many: allocate from N first (Linux 5.17+)")
    p.add_argument("--balancing", action="store_true",
                   help="bind / preferred-many: let kernel NUMA balancing move pages among the nodes "
                        "(without it an explicit policy keeps balancing from moving them)")
    p.add_argument("--cpus", action="store_true", help="also pin the program / each child to its node's CPUs")
    p.add_argument("--mode", default="preferred",
                   help="policy for --node/--spread/--least-loaded: preferred (default), bind, interleave, "
                        "preferred-many, weighted-interleave")
    p.add_argument("--table", metavar="PATH", help="node table the daemon publishes (for --least-loaded)")
    p.add_argument("command_argv", nargs=REMAINDER, metavar="-- CMD ARGS")
    p.set_defaults(func=cmd_exec)


def policy_from_args(args: Namespace) -> PolicySpec | None:
    """The policy options as one spec; None for --spread/--least-loaded. Raises ExecUsage."""
    from ..policyspec import PolicySpecError, make_policy, parse_policy, parse_weights
    home = _number(args.home_node, "--home-node") if args.home_node is not None else None
    try:
        if args.policy is not None:
            spec = parse_policy(args.policy)
            if home is not None or args.balancing:
                spec = make_policy(spec.mode, spec.nodes, weights=dict(spec.weights) or None,
                                   home_node=home if home is not None else spec.home_node,
                                   balancing=args.balancing or spec.balancing)
            return spec
        if args.local or args.default:
            return make_policy("local" if args.local else "default", home_node=home, balancing=args.balancing)
        if args.node is not None:
            return make_policy(args.mode, {_number(args.node, "--node")}, home_node=home, balancing=args.balancing)
        for mode in POLICY_OPTIONS.values():
            value = getattr(args, mode.replace("-", "_"))
            if value is None:
                continue
            if mode == "weighted-interleave":
                return make_policy(mode, weights=parse_weights(value), home_node=home, balancing=args.balancing)
            return make_policy(mode, _nodes(value), home_node=home, balancing=args.balancing)
    except PolicySpecError as exc:
        raise ExecUsage(str(exc)) from None
    if home is not None:
        raise ExecUsage("--home-node goes with a policy option (--bind, --preferred-many, --policy)")
    return None


def _number(text: str, option: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ExecUsage(f"{option}: {text!r} is not a whole number (a node number)")
    return int(text)


def _nodes(text: str) -> frozenset[int]:
    from ..topology import online_nodes
    try:
        return parse_nodes(text, all_nodes=online_nodes())
    except NodeListError as exc:
        raise ExecUsage(f"bad node list: {exc}") from None


def cmd_exec(args: Namespace) -> int:
    command = args.command_argv[1:] if args.command_argv[:1] == ["--"] else args.command_argv
    if not command:
        print(f"{PROG}: no command given (usage: numad-py exec --bind 0-1 -- CMD ARGS...)", file=sys.stderr)
        return 2
    try:
        spec = policy_from_args(args)
        if spec is None:
            nodes = _nodes(args.spread if args.spread is not None else args.least_loaded)
            strategy = "spread" if args.spread is not None else "least-loaded"
            env = _shim_env(strategy, nodes, args)
        else:
            env = _apply(spec, args)
    except ExecUsage as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except _Failed as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"{PROG}: {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 1  # not reached


class _Failed(Exception):
    """The policy could not be applied (kernel, privilege): exit code 1."""


def _check_nodes(nodes: frozenset[int], *, cpus: bool) -> None:
    from ..numa import check_nodes
    from ..topology import read_topology
    try:
        check_nodes(nodes)
    except Exception as exc:  # InvalidNode names the nodes
        raise ExecUsage(str(exc)) from None
    if cpus:
        cpuless = sorted(n for n in nodes if not read_topology().node(n).cpus)
        if cpuless:
            raise ExecUsage(f"--cpus: node {format_nodes(cpuless)} has no CPUs (memory-only)")


def _shim_env(strategy: str, nodes: frozenset[int], args: Namespace) -> dict[str, str]:
    """--spread / --least-loaded: the shim places the children with ``--mode`` (+ --balancing)."""
    from ..numa.policy import unsupported_reason
    from ..policyspec import PolicySpecError, make_policy
    from ..shim import ShimError, build_env
    _check_nodes(nodes, cpus=args.cpus)
    try:
        child = make_policy(args.mode, {min(nodes)}, balancing=args.balancing)
    except PolicySpecError as exc:
        raise ExecUsage(f"--mode: {exc}") from None
    reason = unsupported_reason(child)
    if reason is not None:
        raise ExecUsage(reason)
    try:
        return build_env(os.environ, strategy=strategy, nodes=nodes, mode=args.mode, cpus=args.cpus,
                         balancing=args.balancing, root_pid=os.getpid(), table_path=args.table,
                         stats_path=getattr(args, "stats", None))
    except ShimError as exc:
        raise ExecUsage(str(exc)) from None


def _apply(spec: PolicySpec, args: Namespace) -> dict[str, str]:
    """Set ``spec`` on this process (it survives exec); the environment for the program."""
    from ..errors import NumaError
    from ..numa.policy import apply_policy, unsupported_reason
    from ..shim import ShimError, build_policy_env
    if spec.nodes:
        _check_nodes(spec.nodes, cpus=args.cpus)
    elif args.cpus:
        raise ExecUsage(f"--cpus needs the policy's nodes; {spec.mode} has none")
    reason = unsupported_reason(spec)
    if reason is not None:
        raise ExecUsage(reason)
    try:
        if spec.weights:
            _set_weights(dict(spec.weights))
        apply_policy(spec)
        if args.cpus:
            from ..topology import read_topology
            os.sched_setaffinity(0, read_topology().cpus_of(spec.nodes or frozenset()))
        env = build_policy_env(os.environ, spec)
        if args.node is not None:
            # --node: the shim's fixed strategy as before (it counts the children it places)
            from ..shim import build_env
            home = {k: v for k, v in env.items() if k == "NUMAD_SHIM_HOME_NODE"}
            env = {**build_env(env, strategy="fixed", nodes=spec.nodes, mode=spec.mode, cpus=args.cpus,
                               balancing=spec.balancing, root_pid=os.getpid(), table_path=args.table,
                               stats_path=getattr(args, "stats", None)), **home}
    except (NumaError, OSError, ShimError) as exc:
        raise _Failed(f"cannot apply {spec.text()}: {exc}") from None
    return env


def _set_weights(weights: dict[int, int]) -> None:
    from ..numa.weights import read_weights, write_weights
    before = read_weights()
    after = write_weights(weights)
    if after != before:
        text = ",".join(f"{n}:{w}" for n, w in sorted(weights.items()))
        print(f"{PROG}: set the machine's weighted-interleave weights to {text} (one table for the whole "
              "machine: every weighted-interleave policy uses it)", file=sys.stderr)


def exec_main(argv: Sequence[str], *, node: int | None = None, spread: frozenset[int] | None = None,
              least_loaded: frozenset[int] | None = None, cpus: bool = False, mode: str = "preferred",
              table_path: str | os.PathLike | None = None, stats_path: str | os.PathLike | None = None,
              **policy: str | bool | None) -> int:
    """Programmatic entry (tests, scripts): ``exec_main(["prog"], node=1)``, ``exec_main(["prog"],
    weighted_interleave="0:3,1:1")``; policy keywords are the option names with underscores."""
    args = Namespace(
        node=None if node is None else str(node), spread=None if spread is None else format_nodes(spread),
        least_loaded=None if least_loaded is None else format_nodes(least_loaded), cpus=cpus, mode=mode,
        table=table_path, stats=stats_path, command_argv=list(argv), home_node=None, balancing=False,
        local=False, default=False, policy=None, **{m.replace("-", "_"): None for m in POLICY_OPTIONS.values()})
    for key, value in policy.items():
        if not hasattr(args, key):
            raise TypeError(f"exec_main() got an unexpected keyword argument {key!r}")
        setattr(args, key, value)
    chosen = [k for k in ("node", "spread", "least_loaded", "local", "default", "policy",
                          *(m.replace("-", "_") for m in POLICY_OPTIONS.values())) if getattr(args, k)
              not in (None, False)]
    if len(chosen) != 1:
        print(f"{PROG}: give exactly one of --node, --spread, --least-loaded or a policy option", file=sys.stderr)
        return 2
    return cmd_exec(args)
