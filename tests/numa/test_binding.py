"""numad_py.numa on a real multi-node kernel (inside the VM), checked by independent views.

Independent views: /proc/PID/numa_maps and smaps parsed here (not by
numad_py.sense), a raw move_pages query (query_pages), numastat and
migratepages from numactl, and the child's own checksum of its data.
"""

from __future__ import annotations

import ctypes
import errno
import inspect
import json
import mmap
import os
import subprocess
import threading
from pathlib import Path

import pytest

from numad_py import numa
from numad_py.errors import InvalidNode, PermissionDenied, ProcessGone, Unsupported
from numad_py.numa import Mode

from conftest import ChildError, mapping_containing, numa_maps_of, smaps_field

MiB = 1 << 20
PAGE = numa.PAGE_SIZE
SIZE = 64 * MiB
PAGES = SIZE // PAGE
HUGE = 2 * MiB


# --- helpers ---------------------------------------------------------------

def own_vma(pid: int, start: int, end: int) -> int:
    """The region is one VMA of its own, so its numa_maps line speaks for it alone."""
    assert mapping_containing(pid, start) == start
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo == start:
            assert hi == end, f"VMA {lo:#x}-{hi:#x} is not the region {start:#x}-{end:#x}"
            return start
    raise AssertionError("unreachable")


def every_page(start: int, end: int) -> list[int]:
    return list(range(start, end, PAGE))


def assert_all_on(child, node: int, region: str = "anon") -> None:
    """Every page of the region is on ``node`` by numa_maps, by move_pages query and by range_residency."""
    start, end = child.region(region)
    size = end - start
    own_vma(child.pid, start, end)
    assert numa_maps_of(child.pid, start) == {node: size}
    statuses = numa.query_pages(child.pid, every_page(start, end))
    assert set(statuses) == {node}, f"statuses seen: {sorted(set(statuses))}"
    assert numa.range_residency(child.pid, start, end) == {"nodes": {node: size}, "other": {}}


def numastat_mb(pid: int) -> dict[int, float]:
    """Per-node MB of a process by ``numastat -p PID`` (the Total row)."""
    out = subprocess.run(["numastat", "-p", str(pid)], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    header = next(line for line in lines if line.strip().startswith("Node 0"))
    nodes = [int(x) for x in header.split()[1::2] if x.isdigit()]
    total = next(line for line in lines if line.startswith("Total"))
    values = [float(x) for x in total.split()[1:]]
    return dict(zip(nodes, values))


def unused_pid() -> int:
    """A pid with no process behind it: a child that has been reaped, checked absent."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    pid = proc.pid
    assert not Path(f"/proc/{pid}").exists()
    return pid


# --- moving a range of another process --------------------------------------

@pytest.mark.topology("two", "four", "memonly")
def test_range_of_child_moved_0_to_1_every_page_and_data_intact(workload):
    child = workload("--mib", 64, "--node", 0)
    start, end = child.region()
    assert_all_on(child, 0)
    before = child.checksum()

    result = numa.migrate_range(child.pid, start, end, {1})

    assert result.pages_requested == PAGES
    assert result.moved == PAGES
    assert (result.already, result.not_present, dict(result.failed)) == (0, 0, {})
    assert result.bytes_moved == SIZE
    assert result.calls >= PAGES // numa.DEFAULT_BATCH
    assert 0 < result.longest_call_seconds <= result.seconds
    assert_all_on(child, 1)
    assert child.checksum() == before
    assert child.cmd("touch")["touched_pages"] == PAGES

    # Idempotent: a second pass finds everything placed and moves nothing.
    again = numa.migrate_range(child.pid, start, end, {1})
    assert (again.moved, again.already, again.calls) == (0, PAGES, 0)


@pytest.mark.topology("two")
def test_partial_unaligned_range_moves_only_the_pages_it_covers(workload):
    child = workload("--mib", 64, "--node", 0)
    region, _end = child.region()
    # Counted from a 2 MiB boundary: a chunk that can end on one does (chunks.huge_aligned),
    # so a range across one can take a fourth call (1 + 4 + 4 + 2 pages with the boundary at
    # page 11); make test saw 4 calls once, with the range where the mmap put it.
    start = -(-region // HUGE) * HUGE
    lo, hi = start + 10 * PAGE + 123, start + 20 * PAGE + 1  # pages 10..20 inclusive
    # A fixed batch: under the default stall bound a slow first call (TCG, a loaded host)
    # shrinks the next batches, and one run made 4 calls.
    result = numa.migrate_range(child.pid, lo, hi, {1}, batch_pages=4, max_stall=None)
    assert result.pages_requested == 11 and result.moved == 11
    assert result.calls == 3  # 4 + 4 + 3 pages
    statuses = numa.query_pages(child.pid, every_page(start, start + 32 * PAGE))
    assert statuses == [0] * 10 + [1] * 11 + [0] * 11


@pytest.mark.topology("two")
def test_whole_process_migration_0_to_1(workload):
    child = workload("--mib", 64, "--node", 0)
    start, end = child.region()
    before = child.checksum()
    private_before = numastat_mb(child.pid)
    assert private_before[0] >= 64

    moved = numa.migrate_process(child.pid, {0}, {1})

    assert moved.source == {0} and moved.target == {1}
    assert moved.pages_not_moved >= 0
    assert_all_on(child, 1)
    assert child.checksum() == before
    after = numastat_mb(child.pid)
    assert after[1] >= 64
    # Only pages mapped by other processes too (shared libraries) may stay behind.
    assert after[0] < private_before[0] - 60


@pytest.mark.topology("two")
def test_query_agrees_with_migratepages_from_numactl(workload):
    """numactl's migratepages moves, the binding's query sees it."""
    child = workload("--mib", 16, "--node", 1)
    start, end = child.region()
    assert numa.range_residency(child.pid, start, end)["nodes"] == {1: 16 * MiB}
    subprocess.run(["migratepages", str(child.pid), "1", "0"], check=True)
    assert numa.range_residency(child.pid, start, end)["nodes"] == {0: 16 * MiB}
    assert numa_maps_of(child.pid, start) == {0: 16 * MiB}


@pytest.mark.topology("two")
def test_thp_range_moves_as_huge_pages(workload, thp_enabled):
    child = workload("--mib", 64, "--thp", "--node", 0)
    start, end = child.region()
    assert start % HUGE == 0
    huge_before = smaps_field(child.pid, start, "AnonHugePages")
    assert huge_before >= SIZE * 7 // 8, f"only {huge_before >> 20} MiB of THP at fault time"
    before = child.checksum()

    result = numa.migrate_range(child.pid, start, end, {1})

    assert result.moved == PAGES and result.failed_total == 0
    assert_all_on(child, 1)
    # The independent view: they are still huge pages (moved whole, not split).
    assert smaps_field(child.pid, start, "AnonHugePages") == huge_before
    assert child.checksum() == before


@pytest.mark.topology("two")
def test_thp_migration_result_counts_huge_pages(workload, thp_enabled):
    child = workload("--mib", 16, "--thp", "--node", 0)
    start, end = child.region()
    huge = smaps_field(child.pid, start, "AnonHugePages") // HUGE
    assert huge >= 4
    assert numa.migrate_range(child.pid, start, end, {0}).huge_pages == 0     # not counted unless asked
    result = numa.migrate_range(child.pid, start, end, {1}, count_huge_pages=True)
    assert result.huge_pages == huge


@pytest.mark.topology("two")
@pytest.mark.parametrize("batch", [64, 100, 511])
@pytest.mark.parametrize("policy", ["fixed", "caller"])
def test_thp_small_batches_count_every_page_as_moved(workload, thp_enabled, batch, policy):
    """Issue 18 item 15: a batch under 512 pages ends inside a huge page; the kernel
    moves the whole THP, and the tail must count as moved, not "already there".  Also with
    the caller's own batch policy (``next_batch``, as the daemon's executor passes): the
    budget gives back what a chunk did not move, so a tail miscounted as "already there"
    would go unpaid."""
    child = workload("--mib", 16, "--thp", "--node", 0)
    start, end = child.region()
    huge = smaps_field(child.pid, start, "AnonHugePages")
    assert huge >= 12 * MiB, f"only {huge >> 20} MiB of THP at fault time"
    pages = (end - start) // PAGE
    options = {"batch_pages": batch, "max_stall": None}
    if policy == "caller":
        options["next_batch"] = lambda _pages, _seconds: batch

    result = numa.migrate_range(child.pid, start, end, {1}, **options)

    assert (result.moved, result.already, result.failed_total) == (pages, 0, 0), result.to_dict()
    assert result.bytes_moved == end - start
    assert_all_on(child, 1)
    again = numa.migrate_range(child.pid, start, end, {1}, **options)
    assert (again.moved, again.already) == (0, pages)   # the second pass still counts right


@pytest.mark.topology("two")
def test_direct_migration_honours_the_stall_bound_by_default(workload):
    """Issue 18 item 18: the direct path adapts its batch like the daemon (StallPolicy,
    at the daemon's default bound unless told otherwise), instead of fixed 4096-page calls."""
    assert inspect.signature(numa.migrate_ranges).parameters["max_stall"].default == numa.DEFAULT_MAX_STALL
    child = workload("--mib", 64, "--node", 0)
    start, end = child.region()
    fixed = numa.migrate_range(child.pid, start, end, {1}, batch_pages=4096, max_stall=None)
    # 4 chunks, or 5 when the region does not start on a 2 MiB boundary (chunks end on one)
    assert fixed.moved == PAGES and fixed.calls <= PAGES // 4096 + 1
    bounded = numa.migrate_range(child.pid, start, end, {0}, max_stall=0.005)   # 4,096-page calls overrun it
    assert bounded.moved == PAGES
    assert bounded.calls > fixed.calls, (bounded.calls, fixed.calls)
    capped = numa.migrate_range(child.pid, start, end, {1}, batch_pages=256)   # a ceiling, still adaptive
    assert capped.moved == PAGES and capped.calls >= PAGES // 256
    assert_all_on(child, 1)


@pytest.fixture
def cpuset_cgroup():
    """A cgroup v2 child whose cpuset.mems is node 0 only; removed at teardown."""
    root = Path("/sys/fs/cgroup")
    if not (root / "cgroup.controllers").exists() or "cpuset" not in (root / "cgroup.controllers").read_text():
        pytest.fail("cgroup v2 with the cpuset controller is needed")
    (root / "cgroup.subtree_control").write_text("+cpuset")
    group = root / f"numad-test-cpuset-{os.getpid()}"
    group.mkdir(exist_ok=True)
    (group / "cpuset.mems").write_text("0")
    yield group
    for pid in (group / "cgroup.procs").read_text().split():
        (root / "cgroup.procs").write_text(pid)
    group.rmdir()


@pytest.mark.topology("two")
def test_target_confined_by_its_cpuset_is_named_as_the_cause(workload, cpuset_cgroup):
    """Issue 18 item 17: move_pages fails EACCES when the destination is outside the
    target's cpuset.mems; as root that is not a missing capability."""
    child = workload("--mib", 4, "--node", 0)
    start, end = child.region()
    (cpuset_cgroup / "cgroup.procs").write_text(str(child.pid))
    assert (cpuset_cgroup / "cpuset.mems.effective").read_text().strip() == "0"
    with pytest.raises(InvalidNode) as info:
        numa.migrate_range(child.pid, start, end, {1})
    text = str(info.value)
    assert "cpuset.mems.effective" in text and cpuset_cgroup.name in text, text
    assert "CAP_SYS_NICE" not in text
    assert numa_maps_of(child.pid, start) == {0: 4 * MiB}  # nothing moved


# --- per-page and per-call errors ------------------------------------------

@pytest.mark.topology("two")
@pytest.mark.kernel("<6.12")  # 6.12's move_pages status walk (folio_walk) reports such a page as -ENOENT
def test_untouched_anonymous_pages_query_as_efault_on_this_kernel(workload):
    """Kernel fact (6.1, FOLL_DUMP): a never-touched anonymous page reads back -EFAULT, not -ENOENT."""
    child = workload("--mib", 0, "--untouched-mib", 4)
    start, end = child.region("untouched")
    assert set(numa.query_pages(child.pid, every_page(start, end))) == {-errno.EFAULT}
    assert numa_maps_of(child.pid, start) == {}


@pytest.mark.topology("two")
def test_untouched_pages_count_as_not_present(workload):
    child = workload("--mib", 0, "--untouched-mib", 4)
    start, end = child.region("untouched")
    result = numa.migrate_range(child.pid, start, end, {1})
    assert (result.moved, result.already, result.calls) == (0, 0, 0)
    assert (result.not_present, dict(result.failed)) == (4 * MiB // PAGE, {})


@pytest.mark.topology("two")
def test_unmapped_addresses_are_not_present(workload):
    child = workload("--mib", 1)
    # Addresses no mapping covers (below mmap_min_addr): EFAULT per page, no call fails.
    # The query cannot tell them from a never-touched area, so both are "not present":
    # nothing to move (the CLI refuses a --range that no mapping covers).
    lo, hi = 0x1000, 0x9000
    assert set(numa.query_pages(child.pid, every_page(lo, hi))) == {-errno.EFAULT}
    result = numa.migrate_range(child.pid, lo, hi, {1})
    assert (result.moved, result.not_present, dict(result.failed), result.calls) == (0, 8, {}, 0)
    assert numa.range_residency(child.pid, lo, hi) == {"nodes": {}, "other": {"not_present": 8 * PAGE}}


@pytest.mark.topology("two")
def test_shared_file_pages_need_move_all(workload):
    child = workload("--mib", 0, "--shared-mib", 8, "--node", 0)
    start, end = child.region("shared")
    n = 8 * MiB // PAGE
    assert numa_maps_of(child.pid, start) == {0: 8 * MiB}
    before = child.checksum()

    result = numa.migrate_range(child.pid, start, end, {1})
    assert result.moved == 0
    assert dict(result.failed) == {"shared": n}
    assert set(numa.query_pages(child.pid, every_page(start, end))) == {0}

    forced = numa.migrate_range(child.pid, start, end, {1}, move_all=True)
    assert forced.moved == n and forced.failed_total == 0
    assert numa_maps_of(child.pid, start) == {1: 8 * MiB}
    # The second mapping of the same file pages sees them moved too.
    start2, _ = child.region("shared2")
    assert numa_maps_of(child.pid, start2) == {1: 8 * MiB}
    assert child.checksum() == before


@pytest.mark.topology("two", "memonly")
@pytest.mark.parametrize("node", [7, 1000, 5000])
def test_node_that_does_not_exist(workload, node):
    child = workload("--mib", 4, "--node", 0)
    start, end = child.region()
    with pytest.raises(InvalidNode):
        numa.migrate_range(child.pid, start, end, {node})
    with pytest.raises(InvalidNode):
        numa.migrate_process(child.pid, {0}, {node})
    with pytest.raises(InvalidNode):
        numa.move_pages(child.pid, [start], [node])
    assert numa_maps_of(child.pid, start) == {0: 4 * MiB}  # nothing moved


@pytest.mark.topology("two")
def test_set_mempolicy_on_a_node_that_does_not_exist_is_invalid_node(workload):
    with pytest.raises(ChildError) as err:
        workload("--mib", 1, "--policy", "bind", "--nodes", "7", "--binding")
    assert err.value.kind == "InvalidNode"


@pytest.mark.topology("two")
def test_pid_that_does_not_exist_is_process_gone():
    pid = unused_pid()
    with pytest.raises(ProcessGone):
        numa.migrate_range(pid, 0x400000, 0x400000 + 16 * PAGE, {1})
    with pytest.raises(ProcessGone):
        numa.range_residency(pid, 0x400000, 0x400000 + 16 * PAGE)
    with pytest.raises(ProcessGone):
        numa.query_pages(pid, [0x400000])
    with pytest.raises(ProcessGone):
        numa.migrate_process(pid, {0}, {1})


NOBODY_PROBE = r"""
import json, sys
from numad_py import numa
pid, start, end = (int(x) for x in sys.argv[1:4])
import os
out = {"own_query": numa.query_pages(os.getpid(), [0x1000])}
def attempt(name, fn):
    try:
        fn()
        out[name] = {"ok": True}
    except Exception as exc:
        out[name] = {"error": type(exc).__name__, "capability": getattr(exc, "capability", None),
                     "errno": getattr(exc, "errno", None)}
attempt("query_pages", lambda: numa.query_pages(pid, [start]))
attempt("range_residency", lambda: numa.range_residency(pid, start, end))
attempt("migrate_range", lambda: numa.migrate_range(pid, start, end, {1}))
attempt("migrate_process", lambda: numa.migrate_process(pid, {0}, {1}))
print(json.dumps(out))
"""


@pytest.mark.topology("two")
def test_other_users_process_is_permission_denied_as_nobody(workload, as_nobody):
    child = workload("--mib", 4, "--node", 0)  # runs as root
    start, end = child.region()
    proc = as_nobody(NOBODY_PROBE, str(child.pid), str(start), str(end))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # The probe itself works as nobody: its own (unmapped) page is a per-page EFAULT, not EPERM.
    assert out["own_query"] == [-errno.EFAULT]
    for op in ("query_pages", "range_residency", "migrate_range", "migrate_process"):
        assert out[op]["error"] == "PermissionDenied", (op, out[op])
        assert out[op]["errno"] == errno.EPERM, (op, out[op])
        assert out[op]["capability"], op
    assert "CAP_SYS_NICE" in out["migrate_process"]["capability"]
    assert numa_maps_of(child.pid, start) == {0: 4 * MiB}  # nothing moved
    assert out["migrate_range"]["error"] == PermissionDenied.__name__


# --- memory policy, then allocate -------------------------------------------

def policy_child(workload, mode: str, nodes: str, mib: int = 16):
    return workload("--mib", mib, "--policy", mode, "--nodes", nodes, "--binding")


@pytest.mark.topology("two", "memonly")
@pytest.mark.parametrize("mode", ["preferred", "bind", "preferred-many"])
def test_policy_places_new_pages_on_node_1(workload, mode):
    child = policy_child(workload, mode, "1")
    # The raw get_mempolicy in the child agrees with what the binding set.
    assert child.info["policy"] == {"mode": Mode.parse(mode).value, "nodes": [1]}
    assert_all_on(child, 1)


@pytest.mark.topology("memonly")
@pytest.mark.parametrize("mode", ["preferred", "bind", "preferred-many"])
def test_policy_places_new_pages_on_the_memory_only_node(workload, topo, mode):
    assert topo.memory_only_nodes == {2}
    child = policy_child(workload, mode, "2")
    assert_all_on(child, 2)


@pytest.mark.topology("four")
def test_preferred_many_keeps_pages_within_its_nodes(workload):
    child = policy_child(workload, "preferred-many", "2-3")
    start, end = child.region()
    nodes = numa.range_residency(child.pid, start, end)["nodes"]
    assert set(nodes) <= {2, 3} and sum(nodes.values()) == 16 * MiB
    assert set(numa_maps_of(child.pid, start)) <= {2, 3}


@pytest.mark.topology("two", "four", "memonly")
def test_interleave_spreads_pages_over_all_nodes(workload, topo):
    nodes = sorted(topo.memory_nodes)
    child = policy_child(workload, "interleave", ",".join(map(str, nodes)), mib=32)
    start, end = child.region()
    per_node = numa_maps_of(child.pid, start)
    assert set(per_node) == set(nodes)
    share = 32 * MiB / len(nodes)
    for node in nodes:  # base pages (MADV_NOHUGEPAGE): round-robin per page
        assert abs(per_node[node] - share) <= PAGE * len(nodes), per_node
    assert numa.range_residency(child.pid, start, end)["nodes"] == per_node


@pytest.mark.topology("two")
@pytest.mark.kernel_lacks("weighted_interleave")  # 6.9+ has MPOL_WEIGHTED_INTERLEAVE
def test_weighted_interleave_is_unsupported_on_6_1_and_preferred_many_supported():
    assert os.uname().release.startswith("6.1.")
    assert numa.supports(Mode.PREFERRED_MANY) is True
    assert numa.supports(Mode.WEIGHTED_INTERLEAVE) is False


@pytest.mark.topology("two")
@pytest.mark.kernel_lacks("weighted_interleave")  # 6.9+ has MPOL_WEIGHTED_INTERLEAVE
def test_weighted_interleave_raises_unsupported(workload):
    with pytest.raises(ChildError) as err:
        policy_child(workload, "weighted-interleave", "0-1")
    assert err.value.kind == "Unsupported"
    assert "weighted-interleave" in str(err.value)
    assert err.value.kind == Unsupported.__name__


@pytest.mark.topology("two")
def test_thread_policy_roundtrip_get_set():
    """set_mempolicy/get_mempolicy on a thread of this process (policies are per thread)."""
    seen = {}

    def body():
        numa.set_mempolicy(Mode.BIND, {1})
        seen["bind"] = numa.get_mempolicy()
        numa.set_mempolicy(Mode.INTERLEAVE, {0, 1})
        seen["interleave"] = numa.get_mempolicy()
        numa.set_mempolicy(Mode.DEFAULT)
        seen["default"] = numa.get_mempolicy()

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen["bind"] == numa.MemPolicy(Mode.BIND, frozenset({1}))
    assert seen["interleave"] == numa.MemPolicy(Mode.INTERLEAVE, frozenset({0, 1}))
    assert seen["default"].mode == Mode.DEFAULT
    assert numa.allowed_nodes() == {0, 1}


@pytest.mark.topology("two")
def test_mbind_own_range_then_move():
    size = 8 * MiB
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))  # the temporary export ends here
    try:
        numa.mbind(addr, size, Mode.BIND, {1})
        assert numa.get_mempolicy(addr) == numa.MemPolicy(Mode.BIND, frozenset({1}))
        m[:] = b"\x5a" * size
        pages = every_page(addr, addr + size)
        assert set(numa.query_pages(os.getpid(), pages)) == {1}
        numa.mbind(addr, size, Mode.BIND, {0}, move=True, strict=True)
        assert set(numa.query_pages(os.getpid(), pages)) == {0}
        assert m[:16] == b"\x5a" * 16 and m[-16:] == b"\x5a" * 16
    finally:
        m.close()


# --- several targets, other topologies --------------------------------------

@pytest.mark.topology("four")
def test_range_moved_to_two_far_nodes_is_split_evenly(workload):
    child = workload("--mib", 64, "--node", 0)
    start, end = child.region()
    before = child.checksum()
    result = numa.migrate_range(child.pid, start, end, {2, 3})
    assert result.moved == PAGES and result.failed_total == 0
    per_node = numa_maps_of(child.pid, start)
    assert set(per_node) == {2, 3}
    assert abs(per_node[2] - per_node[3]) <= PAGE * 2, per_node
    assert numa.range_residency(child.pid, start, end)["nodes"] == per_node
    statuses = numa.query_pages(child.pid, every_page(start, end))
    assert set(statuses) == {2, 3}
    assert child.checksum() == before


@pytest.mark.topology("four")
def test_range_moved_to_the_farthest_node(workload, topo):
    far = max((n for n in topo.node_ids if n != 0), key=lambda n: topo.distances[(0, n)])
    assert far == 3
    child = workload("--mib", 16, "--node", 0)
    start, end = child.region()
    result = numa.migrate_range(child.pid, start, end, {far})
    assert result.moved == 16 * MiB // PAGE
    assert_all_on(child, far)


@pytest.mark.topology("memonly")
def test_range_moved_onto_the_memory_only_node_and_back(workload):
    child = workload("--mib", 64, "--node", 0)
    start, end = child.region()
    before = child.checksum()
    result = numa.migrate_range(child.pid, start, end, {2})
    assert result.moved == PAGES and result.failed_total == 0
    assert_all_on(child, 2)
    back = numa.migrate_process(child.pid, {2}, {1})
    assert back.pages_not_moved == 0
    assert_all_on(child, 1)
    assert child.checksum() == before
