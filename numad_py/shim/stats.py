"""The shim's counters: the stats file's format and this process's own counters.

Layout: ``struct numad_shim_stats`` and ``enum numad_counter`` in
``cext/preload/numad_shim.h`` (checked against this module by
tests/shim/test_shim_layout.py).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
import struct

from .locate import ShimError, shim_path

STATS_MAGIC = b"NUMADST1"
STATS_VERSION = 1
STATS_HEADER = struct.Struct("=8sII")
# Order of enum numad_counter: NC_X is "x", NC_FB_X is "fallback_x".
COUNTERS = (
    "calls", "placed", "passthrough", "fallback",
    "fallback_config", "fallback_no_table", "fallback_stale_table", "fallback_table_busy",
    "fallback_no_candidate", "fallback_get_policy", "fallback_set_policy",
    "restore_failed", "pin_failed", "vfork_unplaced", "rules_invalid", "rules_matched",
)
STATS_SIZE = STATS_HEADER.size + 8 * len(COUNTERS)


def decode_stats(data: bytes) -> dict[str, int]:
    if len(data) < STATS_HEADER.size:
        return {name: 0 for name in COUNTERS}
    magic, _version, nr = STATS_HEADER.unpack_from(data)
    if magic != STATS_MAGIC:
        raise ValueError("shim stats: bad magic")
    nr = min(nr, len(COUNTERS), (len(data) - STATS_HEADER.size) // 8)
    values = struct.unpack_from(f"={nr}Q", data, STATS_HEADER.size)
    out = {name: 0 for name in COUNTERS}
    out.update(zip(COUNTERS, values))
    return out


def read_stats(path: str | os.PathLike) -> dict[str, int]:
    """Counters of every process that ran with ``NUMAD_SHIM_STATS=path``."""
    return decode_stats(Path(path).read_bytes())


def process_stats() -> dict[str, int] | None:
    """This process's counters if the shim is loaded in it (else None).

    Also ``state`` (0 dormant, 1 placing here, 2 bad config, 3 not the root)
    and ``rule``: the rules-file line that configured it (index), or -1 no
    rules file, -2 invalid file, -3 no line matched, -4 not in the include
    list, -5 configured by NUMAD_SHIM_* env vars, -6 the gate showed no
    placing line matches (rules text not read), -7 AT_SECURE: untouched.
    """
    try:
        lib = ctypes.CDLL(str(shim_path()), mode=os.RTLD_NOLOAD)
    except (OSError, ShimError):
        return None
    arr = (ctypes.c_uint64 * len(COUNTERS))()
    n = lib.numad_shim_counters(arr, len(COUNTERS))
    out = dict(zip(COUNTERS, list(arr)[:n]))
    out["state"] = lib.numad_shim_state()
    out["rule"] = lib.numad_shim_rule(None, 0)
    return out


