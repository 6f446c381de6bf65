"""A small child process for the kernel tests: memory at known addresses.

Stdlib only (mmap + ctypes), so what it reports does not depend on the
binding under test.  It:

1. optionally sets its memory policy (``--node N`` / ``--policy MODE --nodes
   LIST``) with a raw ``set_mempolicy`` syscall through ctypes, or through
   ``numad_py.numa.set_mempolicy`` with ``--binding`` (to test the binding);
2. maps ``--mib`` MiB of private anonymous memory (2 MiB aligned and
   ``MADV_HUGEPAGE`` with ``--thp``) and fills every page with seeded
   pseudo-random bytes; ``--untouched-mib`` maps more that it never touches;
3. optionally maps ``--shared-mib`` MiB of a memfd file MAP_SHARED *twice*,
   so each of its pages has two mappings (``move_pages`` without move-all
   refuses such pages with EACCES);
4. prints one JSON line: pid, page size, the ranges, the policy it got;
5. serves one-line commands on stdin, answering one JSON line each:
   ``checksum`` (crc32 of each region), ``touch`` (read every page; data
   unchanged), ``info`` (the JSON of step 4 again), ``exit``, and
   ``watch`` / ``watched``: start two threads that feel a stall, then report
   and stop them (:class:`StallWatch`).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import random
import sys
import threading
import time
import zlib

MiB = 1 << 20
HUGE = 2 * MiB
PAGE = mmap.PAGESIZE

# x86_64 syscall numbers and uapi constants (include/uapi/linux/mempolicy.h).
SYS_SET_MEMPOLICY = 238
SYS_GET_MEMPOLICY = 239
MODES = {"default": 0, "preferred": 1, "bind": 2, "interleave": 3, "local": 4,
         "preferred-many": 5, "weighted-interleave": 6}
MASK_BITS = 1024
MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", 14)
MADV_NOHUGEPAGE = getattr(mmap, "MADV_NOHUGEPAGE", 15)
MADV_DONTFORK = getattr(mmap, "MADV_DONTFORK", 10)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def parse_nodes(text: str) -> list[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return sorted(out)


def _mask(nodes):
    words = MASK_BITS // (8 * ctypes.sizeof(ctypes.c_ulong))
    mask = (ctypes.c_ulong * words)()
    for n in nodes:
        mask[n // 64] |= 1 << (n % 64)
    return mask


def raw_set_mempolicy(mode: str, nodes: list[int]) -> None:
    mask = _mask(nodes)
    rc = _libc.syscall(ctypes.c_long(SYS_SET_MEMPOLICY), ctypes.c_int(MODES[mode]),
                       mask if nodes else None, ctypes.c_ulong(MASK_BITS + 1 if nodes else 0))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"set_mempolicy({mode}, {nodes}): {os.strerror(err)}")


def raw_get_mempolicy() -> tuple[int, list[int]]:
    mode = ctypes.c_int()
    mask = _mask(())
    rc = _libc.syscall(ctypes.c_long(SYS_GET_MEMPOLICY), ctypes.byref(mode), mask,
                       ctypes.c_ulong(MASK_BITS + 1), None, ctypes.c_ulong(0))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"get_mempolicy: {os.strerror(err)}")
    nodes = [w * 64 + b for w in range(len(mask)) for b in range(64) if mask[w] >> b & 1]
    return mode.value, nodes


def address_of(m: mmap.mmap, offset: int = 0) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(m, offset))


class Workload:
    def __init__(self, args):
        self.args = args
        self.regions: dict[str, tuple[mmap.mmap, int, int]] = {}  # name -> (map, offset, length)
        self.addr: dict[str, dict] = {}

    def map_anon(self, mib: int, thp: bool, seed: int) -> None:
        size = mib * MiB
        if thp:
            # Over-allocate so a 2 MiB aligned window of `size` fits inside.
            m = mmap.mmap(-1, size + HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            base = address_of(m)
            offset = (-base) % HUGE
            m.madvise(MADV_HUGEPAGE, offset, size)
        else:
            # Base pages only (THP may be "always"): placement is then exact per page.
            m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            offset = 0
            m.madvise(MADV_NOHUGEPAGE, 0, size)
        # A flag no other mapping has keeps the region one VMA of its own, not
        # merged with neighbours: its numa_maps/smaps line is exactly the region.
        m.madvise(MADV_DONTFORK, offset, size)
        # Every page gets distinct pseudo-random bytes: a checksum sees any lost page.
        m[offset:offset + size] = random.Random(seed).randbytes(size)
        start = address_of(m, offset)
        self.regions["anon"] = (m, offset, size)
        self.addr["anon"] = {"start": start, "end": start + size}

    def map_untouched(self, mib: int) -> None:
        size = mib * MiB
        m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        m.madvise(MADV_NOHUGEPAGE, 0, size)
        m.madvise(MADV_DONTFORK, 0, size)
        start = address_of(m)  # takes no page: nothing is read or written
        self.untouched = m
        self.addr["untouched"] = {"start": start, "end": start + size}

    def map_shared(self, mib: int, seed: int) -> None:
        size = mib * MiB
        fd = os.memfd_create("numad-test-shared")
        os.ftruncate(fd, size)
        first = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
        second = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
        os.close(fd)
        first[:] = random.Random(seed + 1).randbytes(size)
        # Fault every page in through the second mapping too: mapcount 2.
        for off in range(0, size, PAGE):
            second[off]
        self.regions["shared"] = (first, 0, size)
        self.regions["shared2"] = (second, 0, size)
        for name in ("shared", "shared2"):
            start = address_of(self.regions[name][0])
            self.addr[name] = {"start": start, "end": start + size}

    def info(self) -> dict:
        mode, nodes = raw_get_mempolicy()
        return {"pid": os.getpid(), "page_size": PAGE, "regions": self.addr,
                "policy": {"mode": mode, "nodes": nodes}}

    def checksum(self) -> dict:
        return {name: zlib.crc32(memoryview(m)[off:off + size])
                for name, (m, off, size) in self.regions.items()}

    def touch(self) -> dict:
        total = 0
        for m, off, size in self.regions.values():
            for page in range(off, off + size, PAGE):
                total += m[page]
        return {"touched_pages": sum(s // PAGE for _, _, s in self.regions.values()), "sum": total}


class StallWatch:
    """What a process being moved feels.  A writer thread writes one byte of every page
    of the anon region, over and over, and keeps the longest time between two writes; a
    mapper thread maps, touches and unmaps 64 KiB every 2 ms (what malloc does), and
    keeps its longest round.  A mapping waits for every holder of the process's memory
    map lock, and while it waits, on 6.1 so does every page fault behind it.  The writer
    changes the region's bytes: a checksum taken after a watch differs."""

    def __init__(self, region: tuple[mmap.mmap, int, int]):
        self.region = region
        self.stop = threading.Event()
        self.longest = {"write": 0.0, "map": 0.0}
        self.map_rounds = 0
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._write, self._map)]
        for t in self.threads:
            t.start()

    def _write(self) -> None:
        m, off, size = self.region
        last = time.monotonic()
        while not self.stop.is_set():
            for page in range(off, off + size, PAGE):
                m[page] = (m[page] + 1) & 0xFF
                now = time.monotonic()
                self.longest["write"] = max(self.longest["write"], now - last)
                last = now

    def _map(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            m = mmap.mmap(-1, 16 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            for page in range(0, 16 * PAGE, PAGE):
                m[page] = 1
            m.close()
            self.longest["map"] = max(self.longest["map"], time.monotonic() - t0)
            self.map_rounds += 1
            self.stop.wait(0.002)

    def report(self) -> dict:
        self.stop.set()
        for t in self.threads:
            t.join()
        return {"longest_write_s": self.longest["write"], "longest_map_s": self.longest["map"],
                "map_rounds": self.map_rounds}


def set_policy(args) -> None:
    if args.node is not None:
        mode, nodes = args.policy or "bind", [args.node]
    elif args.policy:
        mode, nodes = args.policy, parse_nodes(args.nodes) if args.nodes else []
    else:
        return
    if args.binding:
        from numad_py import numa  # the binding under test
        numa.set_mempolicy(numa.Mode.parse(mode), nodes)
    else:
        raw_set_mempolicy(mode, nodes)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", type=int, default=64, help="private anonymous MiB (0 for none)")
    p.add_argument("--thp", action="store_true", help="2 MiB aligned + MADV_HUGEPAGE")
    p.add_argument("--untouched-mib", type=int, default=0, help="anonymous MiB never touched")
    p.add_argument("--shared-mib", type=int, default=0, help="memfd MiB mapped MAP_SHARED twice")
    p.add_argument("--node", type=int, help="start on this node (bind unless --policy)")
    p.add_argument("--policy", choices=sorted(MODES), help="memory policy before allocating")
    p.add_argument("--nodes", help="node list for --policy, e.g. 0-1")
    p.add_argument("--binding", action="store_true",
                   help="set the policy with numad_py.numa.set_mempolicy instead of raw ctypes")
    p.add_argument("--reset-policy", action="store_true",
                   help="back to the default policy once the memory is in place (a program that placed its start)")
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args(argv)

    try:
        set_policy(args)
    except Exception as exc:  # reported to the test, which decides
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
        return 3
    w = Workload(args)
    if args.mib:
        w.map_anon(args.mib, args.thp, args.seed)
    if args.untouched_mib:
        w.map_untouched(args.untouched_mib)
    if args.shared_mib:
        w.map_shared(args.shared_mib, args.seed)
    if args.reset_policy:
        raw_set_mempolicy("default", [])
    print(json.dumps(w.info()), flush=True)

    watch: StallWatch | None = None
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "checksum":
            out = w.checksum()
        elif cmd == "touch":
            out = w.touch()
        elif cmd == "info":
            out = w.info()
        elif cmd == "watch":
            watch = StallWatch(w.regions["anon"])
            out = {"watching": True}
        elif cmd == "watched" and watch is not None:
            out, watch = watch.report(), None
        elif cmd == "exit":
            return 0
        else:
            out = {"error": f"unknown command {cmd!r}"}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
