"""Migration on request through the control socket, on a real multi-node kernel (VM only).

The server runs in this (root) pytest process with a real Executor, so its
audit lines are visible to caplog; clients are this process or, for the
authorization tests, a Python child running as ``nobody``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading


import pytest

from conftest import numa_maps_of
from numad_py import numa
from numad_py.act.executor import Executor
from numad_py.act.pacing import Pacer
from numad_py.stall import StallPolicy
from numad_py.client import Client
from numad_py.control.server import ControlServer
from numad_py.topology import read_topology

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")


class FixedBatch:
    """A stall object with a constant batch: chunks of a known size for the cancel test."""

    def __init__(self, pages: int):
        self.batch = pages

    def next_batch(self, pages: int, seconds: float) -> int:
        return self.batch


@pytest.fixture
def control(caplog):
    """``control(mode="0600", rate=0, batch=None) -> (server, client)``; all stopped at teardown."""
    made = []
    caplog.set_level(logging.INFO, logger="numad_py.audit")

    def start(*, mode: str = "0600", rate: float = 0, batch: int | None = None):
        d = tempfile.mkdtemp(prefix="ctl", dir="/tmp")
        os.chmod(d, 0o755)
        stall = FixedBatch(batch) if batch else StallPolicy(0.02)
        ex = Executor(topology=read_topology, pacer=Pacer(rate), stall=stall, stop=threading.Event())
        srv = ControlServer(f"{d}/control.sock", executor=ex, mode=mode, progress_interval=0.0,
                            status=lambda: {"pid": os.getpid()}).start()
        made.append((srv, d))
        return srv, Client(srv.socket_path)

    yield start
    for srv, d in made:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


def audit_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "numad_py.audit"]


# --- root migrates a range ---------------------------------------------------------

@pytest.mark.topology("two", "four", "memonly")
def test_root_migrates_a_range_with_progress(workload, control, caplog):
    child = workload("--mib", 32, "--node", 0)
    start, end = child.region()
    before = child.checksum()
    srv, client = control()
    events = []
    # the second half of the region only, split on a 2 MiB boundary (a THP moves whole)
    mid = (start + (end - start) // 2) // (2 * MiB) * (2 * MiB)
    out = client.migrate(child.pid, 1, range=f"{mid:x}-{end:x}", progress=lambda d, t: events.append((d, t)))
    assert out["status"] == "done", out
    r = out["result"]
    assert r["pages_moved"] == (end - mid) // PAGE and not r["pages_failed"]
    assert events and events[-1] == (end - mid, end - mid)
    assert all(d <= t for d, t in events)
    assert numa.range_residency(child.pid, mid, end)["nodes"] == {1: end - mid}
    assert numa.range_residency(child.pid, start, mid)["nodes"] == {0: mid - start}
    assert child.checksum() == before
    # query through the socket agrees
    q = client.query(child.pid, f"{mid:x}-{end:x}")
    assert q["nodes"] == {"1": end - mid}
    lines = audit_lines(caplog)
    assert len(lines) == 1 and 'op="migrate"' in lines[0] and f'pid={child.pid} to="1"' in lines[0]
    assert 'result="done"' in lines[0] and f"bytes_moved={end - mid}" in lines[0]


# --- nobody: refused for root's process, allowed for its own ------------------------

NOBODY_CLIENT = r"""
import json, mmap, os, sys
from numad_py.client import Client, Forbidden, page_span
from numad_py import numa
sock, root_pid = sys.argv[1], int(sys.argv[2])
c = Client(sock)
out = {"uid": os.getuid()}
try:
    c.migrate(root_pid, 1)
    out["root"] = "allowed?!"
except Forbidden as exc:
    out["root"] = {"code": exc.code, "message": exc.message}
try:
    c.migrate(root_pid, 1, move_all=True)
except Forbidden as exc:
    out["root_move_all"] = exc.message
buf = mmap.mmap(-1, 4 << 20)
buf[:] = os.urandom(4 << 20)
out["before"] = numa.range_residency(os.getpid(), *page_span(buf))["nodes"]
# The buffer lands wherever this process happened to run: move it to the other node.
out["target"] = target = 0 if out["before"].get(1, 0) > out["before"].get(0, 0) else 1
r = c.move_buffer(buf, target)
out["own"] = {"status": r["status"], "moved": r["result"]["pages_moved"]}
out["after"] = numa.range_residency(os.getpid(), *page_span(buf))["nodes"]
try:
    c.migrate(os.getpid(), 1, move_all=True)
except Forbidden as exc:
    out["own_move_all"] = exc.message
try:
    c.drain(1)
except Forbidden as exc:
    out["drain"] = exc.message
print(json.dumps(out))
"""


@pytest.mark.topology("two", "memonly")
def test_nobody_is_refused_for_root_process_and_allowed_for_its_own(workload, control, as_nobody, caplog):
    child = workload("--mib", 4, "--node", 0)          # runs as root
    start, _end = child.region()
    srv, _client = control(mode="0666")                 # nobody must be able to connect
    proc = as_nobody(NOBODY_CLIENT, srv.socket_path, str(child.pid))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["uid"] == 65534
    assert out["root"]["code"] == "forbidden"
    assert (f"uid 65534 may only migrate its own processes; process {child.pid} runs as real uid 0"
            in out["root"]["message"])
    assert "move-all needs root" in out["root_move_all"]
    assert "move-all needs root" in out["own_move_all"]
    assert "drain needs root or the admin group" in out["drain"]
    assert out["own"]["status"] == "done" and out["own"]["moved"] > 0
    assert set(out["after"]) == {str(out["target"])}, out   # json turned node keys into strings
    assert numa_maps_of(child.pid, start) == {0: 4 * MiB}   # root's process untouched
    lines = audit_lines(caplog)
    refused = [l for l in lines if f"pid={child.pid}" in l]
    assert refused and all("peer_uid=65534" in l and 'result="forbidden"' in l for l in refused)
    assert 'reason="uid 65534 may only migrate its own processes' in refused[0]
    assert any("peer_uid=65534" in l and 'result="done"' in l for l in lines)
    assert any('op="drain"' in l and 'result="forbidden"' in l for l in lines)


# --- drain ---------------------------------------------------------------------------

@pytest.mark.topology("memonly")
@pytest.mark.parametrize("node", [1, 2])
def test_drain_empties_the_node_except_refused_pages(workload, control, node):
    topo = read_topology()
    assert 2 in topo.memory_only_nodes
    child = workload("--mib", 24, "--shared-mib", 4, "--policy", "preferred", "--node", node)
    start, _ = child.region()
    shared_start, _ = child.region("shared")
    shared2_start, _ = child.region("shared2")
    assert numa_maps_of(child.pid, start) == {node: 24 * MiB}
    before = child.checksum()
    srv, client = control()
    events = []
    result = client.drain(node, progress=lambda d, t: events.append((d, t)))
    assert result["status"] == "done" and not result["cancelled"], result
    others = sorted(topo.memory_nodes - {node})
    assert result["targets"] == ",".join(map(str, others)) or result["target_order"] == others
    assert events and events[-1][0] == events[-1][1]
    # The workload's private pages left the node ...
    after = numa_maps_of(child.pid, start)
    assert node not in after and sum(after.values()) == 24 * MiB, after
    assert set(after) <= set(others)
    # ... its doubly-mapped shared pages were refused (no move-all) and reported by reason.
    mine = [p for p in result["processes"] if p["pid"] == child.pid]
    assert len(mine) == 1 and mine[0]["status"] == "done", mine
    assert mine[0]["pages_failed"].get("shared", 0) >= 4 * MiB // PAGE, mine
    assert result["pages_failed"]["shared"] >= mine[0]["pages_failed"]["shared"]
    assert numa_maps_of(child.pid, shared_start).get(node) == 4 * MiB
    assert result["bytes_on_node_remaining"] < result["bytes_on_node_before"]
    assert child.checksum() == before


# --- cancel ----------------------------------------------------------------------------

@pytest.mark.topology("two", "memonly")
def test_cancel_stops_within_one_chunk_and_data_is_intact(workload, control, caplog):
    child = workload("--mib", 48, "--node", 0)
    start, end = child.region()
    before = child.checksum()
    chunk_pages = 256                                   # 1 MiB chunks
    srv, client = control(rate=6 * MiB, batch=chunk_pages)   # ~8 s for the whole region
    seen = []
    first = threading.Event()

    def on_progress(done, total):
        seen.append(done)
        if done >= 2 * MiB:
            first.set()

    box = {}
    t = threading.Thread(target=lambda: box.update(out=client.migrate(
        child.pid, 1, range=f"{start:x}-{end:x}", progress=on_progress, request_id="long-one")))
    t.start()
    assert first.wait(60), "no progress"
    ack = client.cancel("long-one")
    done_at_cancel = seen[-1]
    assert ack == {"request": "long-one", "cancelling": 1}
    t.join(60)
    out = box["out"]
    assert out["status"] == "cancelled", out
    r = out["result"]
    assert r["cancelled"] is True
    processed = (r["pages_moved"] + r["pages_already_on_target"] + r["pages_not_present"]
                 + sum(r["pages_failed"].values())) * PAGE
    assert processed < end - start
    # At most the chunk running when cancel arrived (plus one progress event in flight) after it.
    assert processed <= done_at_cancel + 2 * chunk_pages * PAGE, (processed, done_at_cancel)
    res = numa.range_residency(child.pid, start, end)["nodes"]
    assert res.get(0, 0) + res.get(1, 0) == end - start
    # A transparent huge page moves whole: its pages in the next chunk count as "already on
    # target", and one straddling the last chunk's end adds at most 2 MiB.
    on_target = (r["pages_moved"] + r["pages_already_on_target"]) * PAGE
    assert on_target <= res.get(1, 0) <= on_target + 2 * MiB, (res, r)
    assert child.checksum() == before
    lines = [l for l in audit_lines(caplog) if 'id="long-one"' in l]
    assert len(lines) == 1 and 'result="cancelled"' in lines[0] and "cancelled_by=" in lines[0]
