"""The control plane's sensing on this machine's real /proc (through procfs only)."""

from __future__ import annotations

import mmap
import os
import time

import pytest

from numad_py.control import host as host_mod
from numad_py.control.host import KernelHost, QueryTooLarge, mapped_parts

MAPS = ("00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/dbus-daemon\n"
        "7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \n")


def test_mapped_parts_clip_the_range_to_mappings():
    assert mapped_parts(MAPS, 0, 1 << 48) == [(0x400000, 0x452000), (0x7F0000000000, 0x7F0000100000)]
    assert mapped_parts(MAPS, 0x410000, 0x420000) == [(0x410000, 0x420000)]
    assert mapped_parts(MAPS, 0x500000, 0x600000) == []


def test_huge_range_query_costs_only_the_mapped_pages():
    buf = mmap.mmap(-1, 1 << 20)
    buf[:] = b"x" * (1 << 20)
    t0 = time.monotonic()
    out = KernelHost().query(os.getpid(), "0-ffffffffffff")
    assert time.monotonic() - t0 < 30          # 2^36 pages one by one would never end
    assert sum(out["nodes"].values()) >= 1 << 20
    assert out["other"]["not_present"] > 1 << 46   # the unmapped space, counted without a syscall


def test_query_stops_between_chunks_and_is_capped(monkeypatch):
    with pytest.raises(InterruptedError):
        KernelHost().query(os.getpid(), "0-ffffffffffff", cancelled=lambda: True)
    monkeypatch.setattr(host_mod, "MAX_QUERY_PAGES", 16)
    with pytest.raises(QueryTooLarge, match="narrower range"):
        KernelHost().query(os.getpid(), "0-ffffffffffff")


def test_credentials_are_one_snapshot_of_this_process():
    c = KernelHost().credentials(os.getpid())
    assert c.pid == os.getpid() and c.uids[0] == os.getuid() and c.dumpable
