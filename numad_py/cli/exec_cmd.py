"""``numad-py exec``: run a command with the fork-time shim preloaded."""

from __future__ import annotations

from collections.abc import Sequence
import os
import sys

from ..nodes import format_nodes
from ..shim import SHIM_MODES, ShimError, build_env


def _validate(nodes: frozenset[int], *, cpus: bool, mode: str, sys_root: str = "/sys") -> None:
    from ..numa import Mode, check_nodes, supports
    from ..topology import read_topology

    if mode not in SHIM_MODES:
        raise ShimError(f"unknown mode {mode!r} for exec (one of: {', '.join(SHIM_MODES)})")
    try:
        check_nodes(nodes, sys_root=sys_root)
    except Exception as exc:  # InvalidNode with the names in its message
        raise ShimError(str(exc)) from None
    if not supports(Mode.parse(mode)):
        raise ShimError(f"memory policy {mode} is unsupported on this kernel")
    if cpus:
        topo = read_topology(sys_root)
        cpuless = sorted(n for n in nodes if not topo.node(n).cpus)
        if cpuless:
            raise ShimError(f"--cpus: node {format_nodes(cpuless)} has no CPUs (memory-only)")


def exec_main(
    argv_after_dashdash: Sequence[str],
    *,
    node: int | None,
    spread: frozenset[int] | None,
    least_loaded: frozenset[int] | None,
    cpus: bool,
    mode: str = "preferred",
    table_path: str | os.PathLike | None = None,
    stats_path: str | os.PathLike | None = None,
) -> int:
    """``numad-py exec``: exec CMD with the shim preloaded; returns only on error.

    ``--node N``: the program itself gets the policy (and CPUs) of node N
    before exec (policy survives exec), and so do all its children.
    ``--spread``/``--least-loaded``: the program's direct children are placed
    (round-robin / most free memory); deeper descendants stay on their
    parent's node.
    """
    prog = "numad-py exec"
    argv = list(argv_after_dashdash)
    if not argv:
        print(f"{prog}: no command given (usage: numad-py exec --node N -- CMD ARGS...)", file=sys.stderr)
        return 2
    chosen = [(name, val) for name, val in (("--node", node), ("--spread", spread),
                                            ("--least-loaded", least_loaded)) if val is not None]
    if len(chosen) != 1:
        print(f"{prog}: give exactly one of --node, --spread, --least-loaded", file=sys.stderr)
        return 2
    if node is not None:
        strategy, nodes = "fixed", frozenset([node])
    elif spread is not None:
        strategy, nodes = "spread", frozenset(spread)
    else:
        strategy, nodes = "least-loaded", frozenset(least_loaded or ())
    try:
        _validate(nodes, cpus=cpus, mode=mode)
        env = build_env(os.environ, strategy=strategy, nodes=nodes, mode=mode, cpus=cpus,
                        root_pid=os.getpid(), table_path=table_path, stats_path=stats_path)
        if strategy == "fixed":
            from ..numa import Mode, set_mempolicy
            from ..topology import read_topology

            set_mempolicy(Mode.parse(mode), nodes)
            if cpus:
                os.sched_setaffinity(0, read_topology().node(min(nodes)).cpus)
    except ShimError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # NumaError from set_mempolicy, OSError from affinity
        print(f"{prog}: cannot apply node {node}: {exc}", file=sys.stderr)
        return 1
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        print(f"{prog}: {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 1  # not reached


