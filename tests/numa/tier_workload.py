"""A tiering workload for tests/numa/test_tiering.py: stdlib only.

Pins itself to node 0's CPUs (0-1), maps ``--mib`` MiB of private anonymous
memory (first touched there, so on node 0), fills it with seeded random
bytes, then a thread reads one byte of every page of the *hot* 16 MiB slice
over and over (reads: the data and its checksum stay the same), flushing the TLB after
each sweep (see ``flush_tlb``).  It prints
one JSON line (pid, start, size) and serves commands on stdin, one JSON line
each: ``hot N`` (touch slice N from now on), ``checksum`` (crc32 of the whole
mapping), ``exit``.
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
import zlib

MiB = 1 << 20
SLICE = 16 * MiB
PAGE = mmap.PAGESIZE


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mib", type=int, default=128)
    p.add_argument("--hot", type=int, default=0, help="16 MiB slice touched at first")
    p.add_argument("--tag", default="tierwl")
    args = p.parse_args()
    os.sched_setaffinity(0, {0, 1})
    size = args.mib * MiB
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    rnd = random.Random(args.mib)
    chunk = rnd.randbytes(MiB)
    for off in range(0, size, MiB):
        m[off:off + MiB] = chunk[off // MiB % 7:] + chunk[:off // MiB % 7]
    start = ctypes.addressof(ctypes.c_char.from_buffer(m))
    hot = [args.hot]
    stop = threading.Event()

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)

    def flush_tlb(base: int) -> None:
        """TCG's software TLB grows to hold the whole 16 MiB working set and then never walks
        the page tables again, so the accessed bits DAMON clears stay clear and the hot slice
        looks idle (seen in the tiered guest: with 4 KiB pages most of it, with THP one 2 MiB
        page).  A real TLB (~1.5K entries) is thrashed by such a sweep.  Changing the slice's
        protection and back makes the kernel flush the TLB, as that pressure would."""
        for prot in (mmap.PROT_READ, mmap.PROT_READ | mmap.PROT_WRITE):
            if libc.mprotect(start + base, SLICE, prot) != 0:
                raise OSError(ctypes.get_errno(), "mprotect")

    def toucher() -> None:
        total = 0
        while not stop.is_set():
            base = hot[0] * SLICE
            for off in range(base, base + SLICE, PAGE):
                total += m[off]
            flush_tlb(base)
    thread = threading.Thread(target=toucher, daemon=True)
    thread.start()
    print(json.dumps({"pid": os.getpid(), "start": start, "size": size}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "exit":
            break
        if cmd[0] == "hot":
            hot[0] = int(cmd[1])
            print(json.dumps({"hot": hot[0]}), flush=True)
        elif cmd[0] == "checksum":
            print(json.dumps({"crc32": zlib.crc32(m)}), flush=True)
    stop.set()


if __name__ == "__main__":
    main()
