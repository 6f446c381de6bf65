"""The system's weighted-interleave weights: /sys/kernel/mm/mempolicy/weighted_interleave/nodeN.

Linux (6.9+) keeps ONE weight table for the whole machine: set_mempolicy
takes no weights, so every weighted-interleave policy on the machine uses
these.  Writing them needs root (the files are 0644 root).  ``numad-py
exec --weighted-interleave`` and ``numad-py weights --set`` come through here.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import InvalidNode, PermissionDenied, Unsupported
from ..nodes import format_nodes
from ..policyspec import MAX_WEIGHT, MODE_NEEDS

WEIGHTS_DIR = "kernel/mm/mempolicy/weighted_interleave"


def weights_dir(sys_root: str = "/sys") -> Path:
    return Path(sys_root) / WEIGHTS_DIR


def read_weights(sys_root: str = "/sys") -> dict[int, int]:
    """Weight per node as the kernel has them now; Unsupported before Linux 6.9."""
    directory = weights_dir(sys_root)
    if not directory.is_dir():
        raise Unsupported("weighted interleave is unsupported on this kernel "
                          f"(needs Linux {MODE_NEEDS['weighted-interleave']}+)")
    out = {}
    for entry in directory.iterdir():
        if entry.name.startswith("node") and entry.name[4:].isdigit():
            out[int(entry.name[4:])] = int(entry.read_text().strip() or 0)
    return dict(sorted(out.items()))


def write_weights(weights: Mapping[int, int], sys_root: str = "/sys") -> dict[int, int]:
    """Set the weights of the given nodes (others keep theirs); returns the table after.

    Nothing is written when every weight is already as asked, so a user who
    is not root can run with weights an administrator set.
    """
    current = read_weights(sys_root)
    missing = set(weights) - set(current)
    if missing:
        raise InvalidNode(f"node {format_nodes(missing)} has no weighted-interleave weight "
                          f"(nodes with one: {format_nodes(current)})")
    for node, weight in weights.items():
        if not 1 <= weight <= MAX_WEIGHT:
            raise InvalidNode(f"weight of node {node} must be 1-{MAX_WEIGHT}, got {weight}")
    changes = {n: w for n, w in weights.items() if current.get(n) != w}
    for node, weight in sorted(changes.items()):
        path = weights_dir(sys_root) / f"node{node}"
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, f"{weight}\n".encode())
            finally:
                os.close(fd)
        except PermissionError:
            raise PermissionDenied(
                f"the weighted-interleave weights are one table for the whole machine and only root may "
                f"change them ({path}); ask an administrator for `numad-py weights --set "
                f"{','.join(f'{n}:{w}' for n, w in sorted(weights.items()))}`",
                capability="root", errno=errno.EACCES) from None
    return read_weights(sys_root)
