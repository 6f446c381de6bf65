"""The gate: the rules file's placing lines, precompiled for the shim's constructor.

System-wide (``/etc/ld.so.preload``) the shim loads into every process, and
nearly none is named by a rule.  So that those never read and parse the
rules text, :func:`publish_gate` writes ``<rules path>.gate`` next to it: a
fixed-layout binary file (``cext/preload/numad_shim.h``, section 2b) with one
entry per *placing* line (uid, comm glob, exe glob) and the identity
(dev, inode, size, mtime) of the rules file it describes.  ``cext/preload/gate.c``
reads it, and when no entry matches the program stays dormant without opening
the text.  A gate that does not describe the rules file now at the path (a
hand edit, a publish half done) is ignored and the text is read as before, so
the gate can make the shim cheaper but never change what it decides.
"""

from __future__ import annotations

from collections.abc import Sequence
import os
from pathlib import Path
import struct

from .files import replace_atomically

GATE_MAGIC = b"NUMADGT1"
GATE_VERSION = 1
GATE_SUFFIX = ".gate"
GATE_HEADER = struct.Struct("<8sIIIIQQQQII")     # numad_gate_header, 64 bytes
GATE_ENTRY = struct.Struct("<q64s184s")         # numad_gate_entry, 256 bytes
GATE_PASS_ALL = 0x1
COMM_FIELD, EXE_FIELD = 64, 184
GATE_MAX_ENTRIES = 64                            # NUMAD_RULES_MAX_RULES

# One placing rule line as the gate holds it: (real uid or None, comm glob, exe glob).
GateEntry = tuple[int | None, str, str]


def gate_path(rules_path: str | os.PathLike) -> Path:
    """Where the shim looks for the gate of this rules file."""
    return Path(f"{os.fspath(rules_path)}{GATE_SUFFIX}")


def _field(glob: str, size: int) -> bytes | None:
    data = glob.encode()
    return data if len(data) < size and b"\0" not in data else None


def encode_gate(placing: Sequence[GateEntry], rules_stat: os.stat_result) -> bytes:
    """The gate for the rules file whose ``os.stat`` is ``rules_stat`` and whose placing
    lines (action other than ``none``, in any order) are ``placing``. Pure.

    Lines with action ``none`` are left out: a program only they match is
    dormant either way.  A glob too long for its field makes the gate
    PASS_ALL (every program reads the text), never an entry that would
    reject a program the text matches.
    """
    entries, flags = [], 0
    for uid, comm_glob, exe_glob in placing:
        comm, exe = _field(comm_glob, COMM_FIELD), _field(exe_glob, EXE_FIELD)
        if comm is None or exe is None:
            flags |= GATE_PASS_ALL
            continue
        entries.append(GATE_ENTRY.pack(-1 if uid is None else uid, comm, exe))
    if len(entries) > GATE_MAX_ENTRIES:  # cannot happen: compile_shim_rules keeps <= 64 lines
        flags, entries = GATE_PASS_ALL, []
    header = GATE_HEADER.pack(GATE_MAGIC, GATE_VERSION, GATE_HEADER.size, GATE_ENTRY.size, len(entries),
                              rules_stat.st_dev, rules_stat.st_ino, rules_stat.st_size,
                              rules_stat.st_mtime_ns, flags, 0)
    return header + b"".join(entries)


def publish_gate(rules_path: str | os.PathLike, placing: Sequence[GateEntry]) -> None:
    """Write the gate for the rules file just published at ``rules_path`` (temp + rename).

    Called after the rules file is in place: until the gate is renamed in,
    the old gate names another inode and the shim reads the text.
    """
    data = encode_gate(placing, os.stat(rules_path))
    path = gate_path(rules_path)
    try:
        if not path.is_symlink() and path.read_bytes() == data:
            return
    except OSError:
        pass
    replace_atomically(path, data)
