"""Where the built shim library is, and the environment that preloads it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import os
from pathlib import Path

from ..nodes import format_nodes
from ..policyspec import PolicySpec

PACKAGE_DIR = Path(__file__).resolve().parent.parent      # numad_py/
LIBRARY_NAME = "libnumad_shim.so"                          # built by setup.py (build_shim)

STRATEGIES = ("fixed", "spread", "least-loaded")
SHIM_MODES = ("preferred", "bind", "interleave", "preferred-many", "weighted-interleave")
ENV_PREFIX = "NUMAD_SHIM_"


class ShimError(Exception):
    """The shim cannot be used as asked (not built, bad node, bad mode)."""


def shim_path() -> Path:
    """Path of the built shim, ``numad_py/libnumad_shim.so`` (a plain shared library)."""
    candidate = PACKAGE_DIR / LIBRARY_NAME
    if candidate.is_file():
        return candidate
    raise ShimError(
        f"the LD_PRELOAD shim is not built (no {LIBRARY_NAME} in {PACKAGE_DIR}); "
        "run `pip install -e .` or `python setup.py build_ext --inplace`"
    )


def build_env(
    base: Mapping[str, str],
    *,
    strategy: str,
    nodes: Iterable[int],
    mode: str = "preferred",
    cpus: bool = False,
    balancing: bool = False,
    root_pid: int | None = None,
    table_path: str | os.PathLike | None = None,
    stats_path: str | os.PathLike | None = None,
    library: str | os.PathLike | None = None,
) -> dict[str, str]:
    """``base`` plus the shim preloaded (first in LD_PRELOAD) and configured. Pure."""
    if strategy not in STRATEGIES:
        raise ShimError(f"unknown strategy {strategy!r} (one of: {', '.join(STRATEGIES)})")
    if mode not in SHIM_MODES:
        raise ShimError(f"the shim supports modes {', '.join(SHIM_MODES)}, not {mode!r}")
    node_set = frozenset(nodes)
    if not node_set:
        raise ShimError("empty node list")
    if strategy == "fixed" and len(node_set) != 1:
        raise ShimError("fixed placement takes exactly one node")
    env = {k: v for k, v in base.items() if not k.startswith(ENV_PREFIX)}
    lib = str(library if library is not None else shim_path())
    existing = [p for p in env.get("LD_PRELOAD", "").replace(":", " ").split() if p and p != lib]
    env["LD_PRELOAD"] = " ".join([lib, *existing])
    env["NUMAD_SHIM_STRATEGY"] = strategy
    env["NUMAD_SHIM_NODES"] = format_nodes(node_set)
    env["NUMAD_SHIM_MODE"] = mode
    if cpus:
        env["NUMAD_SHIM_CPUS"] = "1"
    if balancing:
        env["NUMAD_SHIM_BALANCING"] = "1"
    if root_pid is not None:
        env["NUMAD_SHIM_ROOT"] = str(root_pid)
    if table_path is not None:
        env["NUMAD_SHIM_TABLE"] = str(table_path)
    if stats_path is not None:
        env["NUMAD_SHIM_STATS"] = str(stats_path)
    return env


def build_policy_env(base: Mapping[str, str], spec: PolicySpec, *,
                     library: str | os.PathLike | None = None) -> dict[str, str]:
    """The environment for a program exec sets ``spec`` on: the policy itself is inherited,
    so the shim is preloaded only for a home node (given per mmap(), see cext/preload/home.c). Pure."""
    env = {k: v for k, v in base.items() if not k.startswith(ENV_PREFIX)}
    if spec.home_node is None:
        return env
    lib = str(library if library is not None else shim_path())
    existing = [p for p in env.get("LD_PRELOAD", "").replace(":", " ").split() if p and p != lib]
    env["LD_PRELOAD"] = " ".join([lib, *existing])
    env["NUMAD_SHIM_HOME_NODE"] = str(spec.home_node)
    return env
