"""Workloads run UNDER the shim by tests/shim and tests/numa/test_shim.py.

Each prints JSON lines on stdout (one os.write per line, so lines from
several processes never interleave) and, where the test must look at a
process from outside, waits until its stdin reaches EOF.

  seed    --size-mib 64 --children 2 [--pin-node 0] [--fresh-mib 8]
  alloc   --size-mib 16                      touch memory, report, wait
  spawn   --how posix_spawn|subprocess|fork|system|popen --size-mib 16
  basic                                      every fork flavour, report policies
  threads --threads 8 --forks 1000           concurrent forks from 8 threads
  preload --lib PATH                         what a forked+exec'd program inherits: LD_PRELOAD, the shim mapped?
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import shlex
import subprocess
import sys
import threading

from numad_py.numa import get_mempolicy

PAGE = mmap.PAGESIZE


def say(**record) -> None:
    os.write(1, (json.dumps(record) + "\n").encode())


def policy() -> dict:
    p = get_mempolicy()
    return {"mode": p.mode.name.lower(), "nodes": sorted(p.nodes)}


def node_cpus(node: int) -> set[int]:
    from numad_py.topology import read_topology
    return set(read_topology().node(node).cpus)


def anon(size: int) -> tuple[mmap.mmap, int]:
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return m, ctypes.addressof(ctypes.c_char.from_buffer(m))


def read_child(r: int, w: int, pid: int) -> bytes:
    """All a child writes to the pipe (r, w), then reap it."""
    os.close(w)
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return out


def wait_stdin_eof() -> None:
    while os.read(0, 4096):
        pass


def cmd_alloc(args) -> int:
    m, addr = anon(args.size_mib << 20)
    ctypes.memset(addr, 7, len(m))
    say(kind="alloc", pid=os.getpid(), addr=addr, size=len(m), policy=policy(),
        cpus=sorted(os.sched_getaffinity(0)))
    wait_stdin_eof()
    return 0


def cmd_seed(args) -> int:
    if args.pin_node is not None:
        os.sched_setaffinity(0, node_cpus(args.pin_node))
    size = args.size_mib << 20
    m, addr = anon(size)
    ctypes.memset(addr, 1, size)               # the parent touches every page
    go_r, go_w = os.pipe()
    kids = []
    for i in range(args.children):
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            ctypes.memset(addr, 2 + i, size)   # the child writes every page: COW copies
            fm, faddr = anon(args.fresh_mib << 20)
            ctypes.memset(faddr, 3, len(fm))   # fresh allocation
            say(kind="child", index=i, pid=os.getpid(), addr=addr, size=size,
                fresh_addr=faddr, fresh_size=len(fm), policy=policy(),
                cpus=sorted(os.sched_getaffinity(0)))
            os.read(go_r, 1)                   # EOF when the parent lets go
            os._exit(0)
        kids.append(pid)
    os.close(go_r)
    say(kind="parent", pid=os.getpid(), addr=addr, size=size, children=kids, policy=policy())
    wait_stdin_eof()
    os.close(go_w)
    bad = 0
    for pid in kids:
        _, status = os.waitpid(pid, 0)
        bad += status != 0
    return 1 if bad else 0


def cmd_spawn(args) -> int:
    child = [sys.executable, os.path.abspath(__file__), "alloc", "--size-mib", str(args.size_mib)]
    if args.how == "posix_spawn":
        pid = os.posix_spawn(sys.executable, child, os.environ)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    if args.how == "subprocess":      # _posixsubprocess: vfork
        return subprocess.run(child).returncode
    if args.how == "subprocess-fork":  # preexec_fn rules vfork out: fork
        return subprocess.run(child, preexec_fn=lambda: None).returncode
    if args.how == "fork":
        pid = os.fork()
        if pid == 0:
            os.execv(sys.executable, child)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    if args.how == "system":
        return os.waitstatus_to_exitcode(os.system(" ".join(child)))
    raise SystemExit(f"unknown --how {args.how}")


def cmd_basic(args) -> int:
    before = policy()
    results = {}
    probe = [sys.executable, "-c",
             "import json; from numad_py.numa import get_mempolicy as g; p = g(); "
             "print(json.dumps({'mode': p.mode.name.lower(), 'nodes': sorted(p.nodes)}))"]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, json.dumps(policy()).encode())
        os._exit(0)
    os.close(w)
    results["os.fork"] = json.loads(os.read(r, 4096))
    os.waitpid(pid, 0)
    os.close(r)
    results["subprocess"] = json.loads(subprocess.run(probe, capture_output=True, text=True, check=True).stdout)
    results["subprocess-fork"] = json.loads(subprocess.run(
        probe, capture_output=True, text=True, check=True, preexec_fn=lambda: None).stdout)
    r, w = os.pipe()
    pid = os.posix_spawn(sys.executable, probe, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, w, 1)])
    results["posix_spawn"] = json.loads(read_child(r, w, pid))
    with os.popen(shlex.join(probe)) as f:
        results["popen"] = json.loads(f.read())
    results["system_status"] = os.waitstatus_to_exitcode(os.system("exit 3"))
    say(kind="basic", before=before, after=policy(), children=results)
    return 0


def cmd_threads(args) -> int:
    per = args.forks // args.threads
    errors: list[str] = []
    wrong = [0]
    lock = threading.Lock()
    expect = set(args.expect_nodes or [])

    def worker():
        for _ in range(per):
            try:
                pid = os.fork()
            except OSError as exc:
                with lock:
                    errors.append(repr(exc))
                continue
            if pid == 0:
                ok = True
                if expect:
                    ok = set(get_mempolicy().nodes) <= expect and get_mempolicy().nodes
                os._exit(0 if ok else 1)
            _, status = os.waitpid(pid, 0)
            if status != 0:
                with lock:
                    wrong[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    say(kind="threads", forks=per * args.threads, errors=errors, wrong_policy=wrong[0], after=policy())
    return 0 if not errors else 1


def cmd_preload(args) -> int:
    lib = os.path.realpath(args.lib)
    probe = ("import json, os, sys; "
             "print(json.dumps({'mapped': any(l.rstrip().endswith(sys.argv[1]) for l in open('/proc/self/maps')), "
             "'preload': os.environ.get('LD_PRELOAD', '')}))")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 1)
        os.execv(sys.executable, [sys.executable, "-c", probe, lib])   # execv: the C environ
    out = read_child(r, w, pid)
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    own = (libc.getenv(b"LD_PRELOAD") or b"").decode()
    say(kind="preload", fork_exec=json.loads(out), own_preload=own)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("alloc")
    p.add_argument("--size-mib", type=int, default=16)
    p = sub.add_parser("seed")
    p.add_argument("--size-mib", type=int, default=64)
    p.add_argument("--children", type=int, default=2)
    p.add_argument("--pin-node", type=int)
    p.add_argument("--fresh-mib", type=int, default=8)
    p = sub.add_parser("spawn")
    p.add_argument("--how", required=True)
    p.add_argument("--size-mib", type=int, default=16)
    sub.add_parser("basic")
    p = sub.add_parser("threads")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--forks", type=int, default=1000)
    p.add_argument("--expect-nodes", type=int, nargs="*")
    p = sub.add_parser("preload")
    p.add_argument("--lib", required=True)
    args = ap.parse_args()
    return {"alloc": cmd_alloc, "seed": cmd_seed, "spawn": cmd_spawn, "basic": cmd_basic,
            "threads": cmd_threads, "preload": cmd_preload}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
