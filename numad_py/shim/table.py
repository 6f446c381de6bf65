"""The node table: binary format and its seqlock publisher/reader.

The daemon publishes free memory per node each scan; the shim maps the file
and reads it on every fork (least-loaded strategy).  The layout is
``struct numad_table_header`` / ``struct numad_table_entry`` in
``cext/preload/numad_shim.h``; tests/shim/test_shim_layout.py compiles that
header and checks these formats against it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import ctypes
import errno
from dataclasses import dataclass, field
import mmap
import os
from pathlib import Path
import struct
import time

from .files import replace_atomically

DEFAULT_TABLE_PATH = Path("/run/numad-py/node-table")

TABLE_MAGIC = b"NUMADTB1"
TABLE_VERSION = 1
TABLE_HEADER = struct.Struct("=8sIIIIQQQQII")  # 64 bytes
TABLE_ENTRY = struct.Struct("=QQIIQ")          # 32 bytes
TABLE_MAX_ENTRIES = 1024
TABLE_SUPERSEDED = 0x1
ENTRY_PRESENT = 0x1
ENTRY_HAS_CPUS = 0x2
# Byte offsets of the header fields the publisher stores one at a time.
OFF_SEQ, OFF_GEN, OFF_UPDATED, OFF_EXPIRES, OFF_FLAGS = 24, 32, 40, 48, 56


@dataclass(frozen=True)
class TableNode:
    free_bytes: int
    total_bytes: int = 0
    present: bool = True
    has_cpus: bool = True


@dataclass
class NodeTable:
    nodes: dict[int, TableNode]
    generation: int = 0
    seq: int = 0
    updated_ns: int = 0
    expires_ns: int = 0
    flags: int = 0
    nr_entries: int = field(default=0)

    @property
    def superseded(self) -> bool:
        return bool(self.flags & TABLE_SUPERSEDED)


def encode_table(nodes: Mapping[int, TableNode], *, generation: int, updated_ns: int,
                 expires_ns: int = 0, seq: int = 0, flags: int = 0) -> bytes:
    """The table file's bytes: entry i describes node i; absent nodes are not PRESENT."""
    nr = (max(nodes) + 1) if nodes else 0
    if nr > TABLE_MAX_ENTRIES or any(n < 0 for n in nodes):
        raise ValueError(f"node ids must be 0-{TABLE_MAX_ENTRIES - 1}")
    out = bytearray(TABLE_HEADER.pack(TABLE_MAGIC, TABLE_VERSION, TABLE_HEADER.size,
                                      TABLE_ENTRY.size, nr, seq, generation, updated_ns,
                                      expires_ns, flags, 0))
    for i in range(nr):
        n = nodes.get(i)
        if n is None:
            out += TABLE_ENTRY.pack(0, 0, 0, 0, 0)
        else:
            eflags = (ENTRY_PRESENT if n.present else 0) | (ENTRY_HAS_CPUS if n.has_cpus else 0)
            out += TABLE_ENTRY.pack(max(0, int(n.free_bytes)), max(0, int(n.total_bytes)), eflags, 0, 0)
    return bytes(out)


def decode_table(data: bytes) -> NodeTable:
    if len(data) < TABLE_HEADER.size:
        raise ValueError("node table: shorter than its header")
    (magic, version, hsize, esize, nr, seq, gen, updated, expires, flags,
     _) = TABLE_HEADER.unpack_from(data)
    if magic != TABLE_MAGIC or version != TABLE_VERSION:
        raise ValueError(f"node table: bad magic/version {magic!r}/{version}")
    if hsize != TABLE_HEADER.size or esize != TABLE_ENTRY.size or nr > TABLE_MAX_ENTRIES:
        raise ValueError("node table: unexpected layout")
    if len(data) < hsize + nr * esize:
        raise ValueError("node table: truncated")
    nodes = {}
    for i in range(nr):
        free, total, eflags, _, _ = TABLE_ENTRY.unpack_from(data, hsize + i * esize)
        if eflags & ENTRY_PRESENT:
            nodes[i] = TableNode(free, total, True, bool(eflags & ENTRY_HAS_CPUS))
    return NodeTable(nodes=nodes, generation=gen, seq=seq, updated_ns=updated,
                     expires_ns=expires, flags=flags, nr_entries=nr)


def read_node_table(path: str | os.PathLike = DEFAULT_TABLE_PATH) -> NodeTable:
    """Read a consistent snapshot (retries while the seqlock is odd or moves)."""
    data = Path(path).read_bytes()
    for _ in range(100):
        table = decode_table(data)
        if table.seq % 2 == 0:
            return table
        time.sleep(0.001)
        data = Path(path).read_bytes()
    raise ValueError(f"node table {path}: writer never finished (seq stays odd)")


def _store_u64(mm: mmap.mmap, offset: int, value: int) -> None:
    # One aligned 8-byte store (ctypes assigns through a single machine word).
    ctypes.c_uint64.from_buffer(mm, offset).value = value


def _table_nodes(free_bytes_by_node: Mapping[int, int], total_bytes_by_node: Mapping[int, int] | None,
                 cpu_nodes: Iterable[int] | None) -> dict[int, TableNode]:
    cpu_set = None if cpu_nodes is None else frozenset(cpu_nodes)
    return {
        int(n): TableNode(
            free_bytes=int(free),
            total_bytes=int((total_bytes_by_node or {}).get(n, 0)),
            present=True,
            has_cpus=True if cpu_set is None else n in cpu_set,
        )
        for n, free in free_bytes_by_node.items()
    }


def _expiry(now: int, valid_for: float | None) -> int:
    return now + int(valid_for * 1e9) if valid_for else 0


def _updatable(head: tuple | None, nr: int, size: int) -> bool:
    """The file (its header ``head``, ``size`` bytes) can take a table of ``nr`` entries in place."""
    return (head is not None and head[0] == TABLE_MAGIC and head[1] == TABLE_VERSION
            and head[4] == nr and not head[9] & TABLE_SUPERSEDED
            and size == TABLE_HEADER.size + nr * TABLE_ENTRY.size)


def _update_in_place(mm: mmap.mmap, nodes: Mapping[int, TableNode], now: int, expires: int) -> int:
    """The seqlock update of a mapped table that :func:`_updatable` accepted; the new generation."""
    generation = TABLE_HEADER.unpack_from(mm)[6] + 1
    seq = TABLE_HEADER.unpack_from(mm)[5] | 1
    _store_u64(mm, OFF_SEQ, seq)          # odd: writing
    body = encode_table(nodes, generation=generation, updated_ns=now, expires_ns=expires)
    mm[TABLE_HEADER.size:len(body)] = body[TABLE_HEADER.size:]
    _store_u64(mm, OFF_GEN, generation)
    _store_u64(mm, OFF_UPDATED, now)
    _store_u64(mm, OFF_EXPIRES, expires)
    _store_u64(mm, OFF_SEQ, seq + 1)      # even: done
    return generation


def publish_node_table(
    path: str | os.PathLike,
    topology_free_bytes_by_node: Mapping[int, int],
    *,
    total_bytes_by_node: Mapping[int, int] | None = None,
    cpu_nodes: Iterable[int] | None = None,
    valid_for: float | None = None,
) -> int:
    """Publish free memory per node for the shim's least-loaded choice; returns the generation.

    ``valid_for`` (seconds) sets the expiry (e.g. three scan intervals): a
    table the daemon stopped refreshing is then ignored by the shim (counted
    fallback), not trusted forever.  Same node count as the existing file:
    seqlock update in place (mapped readers see it at once).  Otherwise: temp
    file + rename, and the old file is marked SUPERSEDED so mapped readers
    re-open the path.  The daemon publishes each scan through a
    :class:`NodeTableWriter`, which keeps the file mapped.
    """
    path = Path(path)
    nodes = _table_nodes(topology_free_bytes_by_node, total_bytes_by_node, cpu_nodes)
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    expires = _expiry(now, valid_for)
    nr = (max(nodes) + 1) if nodes else 0

    old_generation = 0
    try:   # never through a symlink: a planted one is replaced below, not followed
        fd: int | None = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ELOOP):
            raise
        fd = None
    if fd is not None:
        try:
            size = os.fstat(fd).st_size
            raw = os.pread(fd, TABLE_HEADER.size, 0)
            head = TABLE_HEADER.unpack(raw) if len(raw) == TABLE_HEADER.size else None
            if head is not None and head[0] == TABLE_MAGIC:
                old_generation = head[6]
            if _updatable(head, nr, size):
                with mmap.mmap(fd, size) as mm:
                    return _update_in_place(mm, nodes, now, expires)
        finally:
            os.close(fd)

    generation = old_generation + 1
    data = encode_table(nodes, generation=generation, updated_ns=now, expires_ns=expires)
    path.parent.mkdir(parents=True, exist_ok=True)
    old_fd = None
    try:
        old_fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        pass
    try:
        replace_atomically(path, data)
    except BaseException:
        if old_fd is not None:
            os.close(old_fd)
        raise
    if old_fd is not None:  # tell readers that mapped the old file to re-open the path
        try:
            if os.fstat(old_fd).st_size >= TABLE_HEADER.size:
                with mmap.mmap(old_fd, TABLE_HEADER.size) as mm:
                    if mm[:8] == TABLE_MAGIC:
                        ctypes.c_uint32.from_buffer(mm, OFF_FLAGS).value |= TABLE_SUPERSEDED
        finally:
            os.close(old_fd)
    return generation


class NodeTableWriter:
    """:func:`publish_node_table` for a publisher that runs every scan: the file stays mapped
    between scans, so a scan costs one ``stat`` and the stores.  Beside four CPU-busy workloads
    in the TCG guest (tmpfs), a publish that opened, mapped and unmapped the file cost 1.7-2.2 ms
    of CPU; a ``stat`` and a store into a kept map, 0.06 ms.

    The mapping is written only while the path still names the mapped file (device, inode and
    size) and the table in it can take the update in place; else the table is published as
    :func:`publish_node_table` does and the file it leaves is mapped for the next scan."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._held: tuple[mmap.mmap, tuple[int, int, int]] | None = None   # the map, the file's identity

    def publish(self, free_bytes_by_node: Mapping[int, int], *,
                total_bytes_by_node: Mapping[int, int] | None = None,
                cpu_nodes: Iterable[int] | None = None, valid_for: float | None = None) -> int:
        if self._held is not None:
            nodes = _table_nodes(free_bytes_by_node, total_bytes_by_node, cpu_nodes)
            mm, identity = self._held
            try:
                st = os.stat(self.path, follow_symlinks=False)
                same = (st.st_dev, st.st_ino, st.st_size) == identity
            except OSError:
                same = False
            nr = (max(nodes) + 1) if nodes else 0
            if same and _updatable(TABLE_HEADER.unpack_from(mm), nr, len(mm)):
                now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
                return _update_in_place(mm, nodes, now, _expiry(now, valid_for))
            self.close()
        generation = publish_node_table(self.path, free_bytes_by_node, total_bytes_by_node=total_bytes_by_node,
                                        cpu_nodes=cpu_nodes, valid_for=valid_for)
        self._hold()
        return generation

    def _hold(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return          # published, just not kept: the next scan opens it again
        try:
            st = os.fstat(fd)
            self._held = (mmap.mmap(fd, st.st_size), (st.st_dev, st.st_ino, st.st_size))
        except (OSError, ValueError):
            pass
        finally:
            os.close(fd)    # the map keeps its own descriptor, closed with it

    def close(self) -> None:
        if self._held is not None:
            self._held[0].close()
            self._held = None
