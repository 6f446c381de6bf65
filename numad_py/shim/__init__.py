"""The fork-time placement shim, seen from Python: find it, feed it, read its counters.

The shim (``cext/preload/*.c``, built as ``numad_py/libnumad_shim.so``) is an
LD_PRELOAD library that sets the node a child will allocate on *before*
``fork``/``vfork``/``posix_spawn`` create it.  It is configured through
environment variables read once when it loads (a program started with
``AT_SECURE``, e.g. setuid, is left untouched: no variable or file is read):

========================  ====================================================
``NUMAD_SHIM_STRATEGY``   ``fixed`` | ``spread`` | ``least-loaded`` (unset: the rules file decides)
``NUMAD_SHIM_NODES``      node list (``1``, ``1-3``); ``fixed`` takes exactly one
``NUMAD_SHIM_MODE``       ``preferred`` (default) | ``bind`` | ``interleave`` | ``preferred-many``
                          | ``weighted-interleave`` (weights: the machine's table)
``NUMAD_SHIM_BALANCING``  ``1``: the children's policy gets MPOL_F_NUMA_BALANCING
``NUMAD_SHIM_HOME_NODE``  N: each anonymous mmap() gets the task policy with home node N
``NUMAD_SHIM_CPUS``       ``1``: pin each child to its node's CPUs
``NUMAD_SHIM_ROOT``       pid of the one process that places its children
                          (``exec`` sets it to its own pid, which survives exec)
``NUMAD_SHIM_TABLE``      node table path (default ``/run/numad-py/node-table``)
``NUMAD_SHIM_CHILD_BYTES`` least-loaded: local debit per placed child (64 MiB)
``NUMAD_SHIM_STATS``      optional counters file shared by the whole tree
``NUMAD_SHIM_SYSFS``      sysfs root for node cpulists (tests)
``NUMAD_SHIM_DISABLE``    ``1``: dormant
``NUMAD_SHIM_RULES``      rules file (default ``/run/numad-py/shim-rules``)
========================  ====================================================

Modules: :mod:`.locate` (the library and the env that preloads it),
:mod:`.table` (node table format + seqlock publisher), :mod:`.patterns` and
:mod:`.rules` (the rules file), :mod:`.gate` (the rules precompiled for
unmatched programs), :mod:`.stats` (counters), :mod:`.system` (the line in
/etc/ld.so.preload).  The ``exec``
command lives in ``numad_py/cli/exec_cmd.py``.  See docs/shim.md.
"""

from __future__ import annotations

from .locate import (
    ENV_PREFIX, LIBRARY_NAME, SHIM_MODES, STRATEGIES, ShimError, build_env, build_policy_env, shim_path,
)
from .patterns import NotExpressible, regex_to_globs
from .rules import (
    DEFAULT_RULES_PATH, RULES_HEADER, RULES_MAX_BYTES, RULES_MAX_INCLUDES, RULES_MAX_LINE,
    RULES_MAX_RULES, ShimRuleLine, ShimRules, compile_shim_rules, encode_shim_rules,
    publish_shim_rules,
)
from .stats import (
    COUNTERS, STATS_HEADER, STATS_MAGIC, STATS_SIZE, decode_stats, process_stats, read_stats,
)
from .table import (
    DEFAULT_TABLE_PATH, TABLE_ENTRY, TABLE_HEADER, TABLE_MAGIC, NodeTable, TableNode,
    NodeTableWriter, decode_table, encode_table, publish_node_table, read_node_table,
)

__all__ = [
    "COUNTERS", "DEFAULT_RULES_PATH", "DEFAULT_TABLE_PATH", "ENV_PREFIX", "LIBRARY_NAME",
    "RULES_HEADER", "RULES_MAX_BYTES", "RULES_MAX_INCLUDES", "RULES_MAX_LINE", "RULES_MAX_RULES",
    "SHIM_MODES", "STATS_HEADER", "STATS_MAGIC", "STATS_SIZE", "STRATEGIES", "TABLE_ENTRY",
    "TABLE_HEADER", "TABLE_MAGIC", "NodeTable", "NotExpressible", "ShimError", "ShimRuleLine",
    "ShimRules", "TableNode", "build_env", "build_policy_env", "compile_shim_rules", "decode_stats", "decode_table",
    "NodeTableWriter", "encode_shim_rules", "encode_table", "process_stats", "publish_node_table",
    "publish_shim_rules", "read_node_table", "read_stats", "regex_to_globs", "shim_path",
]
