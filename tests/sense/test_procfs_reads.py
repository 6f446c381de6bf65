"""procfs additions used by sense/ and numa: on a fake tree and on real processes."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from numad_py import procfs, procscan
from numad_py.errors import InvalidNode, NumaError, PermissionDenied, ProcessGone
from numad_py.numa import raise_syscall_error
from numad_py.sense.identity import start_time_of

from fake_tree import FakeMachine


def test_mems_allowed_and_cgroup_of_a_fake_process(tmp_path: Path):
    machine = FakeMachine(tmp_path)
    d = machine.add_process(300, "app", cgroup="/db.slice/pg.service")
    status = (d / "status").read_text().replace("Mems_allowed_list:\t0-1", "Mems_allowed_list:\t0")
    (d / "status").write_text(status)
    root = str(machine.proc)
    assert procfs.mems_allowed(300, root=root) == frozenset({0})
    assert procfs.cgroup_path(300, root=root) == "/db.slice/pg.service"
    with pytest.raises(ProcessGone):
        procfs.mems_allowed(301, root=root)


def test_read_system_maps_errors_to_numa_error(tmp_path: Path):
    machine = FakeMachine(tmp_path)
    assert procfs.read_system("sys/kernel/numa_balancing", root=str(machine.proc)).strip() == "1"
    with pytest.raises(NumaError):
        procfs.read_system("no/such/file", root=str(machine.proc))


def test_identity_is_procfs_start_time_and_psutil_agrees():
    psutil = pytest.importorskip("psutil")
    assert start_time_of(os.getpid()) == procfs.start_time(os.getpid())
    assert abs(start_time_of(os.getpid()) - psutil.Process().create_time()) < 0.01


def test_address_space_released_on_real_processes():
    assert procfs.address_space_released(os.getpid()) is False
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert procfs.address_space_released(child.pid) is True   # reaped: gone


def test_cpuset_confinement_is_named_instead_of_a_capability():
    """EACCES from move_pages with a destination outside the target's mems: the cpuset is the cause."""
    allowed = procfs.mems_allowed(os.getpid())
    assert allowed, "this process has a Mems_allowed_list"
    outside = max(allowed) + 1
    with pytest.raises(InvalidNode) as info:
        raise_syscall_error(errno.EACCES, op="move_pages", pid=os.getpid(), targets={outside})
    assert "cpuset.mems.effective" in str(info.value) and "CAP_SYS_NICE" not in str(info.value)
    # A destination inside the cpuset: the errno keeps its ordinary meaning.
    with pytest.raises(PermissionDenied):
        raise_syscall_error(errno.EACCES, op="move_pages", pid=os.getpid(), targets={min(allowed)})


def _stat(pid: int, comm: str, *, flags: int = 0x400100, threads: int = 3, starttime: int = 77, rss: int = 12) -> str:
    fields = ["S", "1", str(pid), str(pid), "0", "-1", str(flags)] + ["0"] * 10
    return f"{pid} ({comm}) " + " ".join(fields + [str(threads), "0", str(starttime), "1000", str(rss)] + ["0"] * 20)


def test_stat_scanner_parses_what_parse_stat_parses_and_leaves_out_the_rest(tmp_path: Path):
    lines = {
        10: _stat(10, "a (b) c"),                          # comm with spaces and parentheses
        11: _stat(11, "k" * 70),                           # longer than any real comm: cut to 63
        12: _stat(12, "kworker/0:1", flags=0x00208040),    # a kernel thread
        13: "13 (broken",                                   # not a stat line
        14: _stat(14, "short").rsplit(" ", 25)[0],          # too few fields
        15: _stat(16, "other pid"),                         # pid 16 inside pid 15's file: taken as written
    }
    for pid, text in lines.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(text + "\n")
    (tmp_path / "17").mkdir()                               # exited before its stat was read
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "stat").write_text(_stat(99, "self") + "\n")
    got = {line.pid: line for line in procscan.StatScanner(str(tmp_path)).scan()}
    assert sorted(got) == [10, 11, 16]
    want = procfs.parse_stat(lines[10])
    assert got[10] == procscan.StatLine(10, want["comm"], want["threads"], want["starttime"], want["rss_pages"])
    assert got[10] == (10, "a (b) c", 3, 77, 12)
    assert got[11].comm == "k" * 63


def test_stat_scanner_grows_past_its_first_buffer_and_skips_named_comms(tmp_path: Path):
    for pid in range(1, 1501):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(_stat(pid, "even" if pid % 2 == 0 else "odd") + "\n")
    scanner = procscan.StatScanner(str(tmp_path))
    assert sorted(line.pid for line in scanner.scan()) == list(range(1, 1501))
    assert sorted(line.pid for line in scanner.scan(skip_comms={b"even"})) == list(range(1, 1501, 2))
    assert sorted(line.pid for line in scanner.scan(skip_comms={b"a", b"odd", b"z", b"ev"})) == \
        list(range(2, 1501, 2))
    assert scanner.scan(skip_comms={b"odd", b"even"}) == []
    assert len(scanner.scan()) == 1500          # the skip list is rebuilt when it changes


def test_stat_scanner_skips_by_the_comm_file_before_reading_stat(tmp_path: Path):
    """With a skip list, a process whose comm file names a skipped comm is left out
    without its stat being read (here its stat names another comm); a comm file that
    is missing or too long leaves the decision to stat."""
    entries = {
        20: ("skipme\n", "other"),         # comm file decides: skipped
        21: (None, "skipme"),               # no comm file: stat decides, skipped
        23: ("x" * 70 + "\n", "kept"),      # too long for a record: stat decides
        24: ("kept\n", "kept"),
    }
    for pid, (comm_file, comm) in entries.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(_stat(pid, comm) + "\n")
        if comm_file is not None:
            (tmp_path / str(pid) / "comm").write_text(comm_file)
    scanner = procscan.StatScanner(str(tmp_path))
    got = {line.pid: line.comm for line in scanner.scan(skip_comms={b"skipme"})}
    assert got == {23: "kept", 24: "kept"}
    assert {line.pid for line in scanner.scan()} == {20, 21, 23, 24}    # no skip list: stat only


def test_the_real_comm_file_and_stat_agree_on_an_odd_comm():
    """The comm-first skip takes the comm file's bytes for stat's comm: on this kernel the two
    agree for a comm holding a backslash, a newline, spaces and parentheses (neither escapes),
    and the scanner reads it back and skips it."""
    odd = b"a\\b (c)\nd"
    child = subprocess.Popen([sys.executable, "-c", (
        "import ctypes, sys, time; ctypes.CDLL(None).prctl(15, sys.argv[1].encode('latin-1'), 0, 0, 0); "
        "print(flush=True); time.sleep(60)"), odd.decode("latin-1")], stdout=subprocess.PIPE)
    try:
        child.stdout.readline()
        with open(f"/proc/{child.pid}/comm", "rb") as f:
            assert f.read() == odd + b"\n"
        scanner = procscan.StatScanner()
        assert [line.comm for line in scanner.scan() if line.pid == child.pid] == [odd.decode()]
        assert not any(line.pid == child.pid for line in scanner.scan(skip_comms={odd}))
    finally:
        child.kill()
        child.wait()


def test_stat_scanner_keeps_kernel_thread_comms_apart(tmp_path: Path):
    for pid, comm, flags in ((30, "kworker/0:1", 0x00208040), (31, "ksoftirqd/0", 0x04208040), (32, "app", 0x400100)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(_stat(pid, comm, flags=flags) + "\n")
        (tmp_path / str(pid) / "comm").write_text(comm + "\n")
    scanner = procscan.StatScanner(str(tmp_path))
    assert [line.pid for line in scanner.scan()] == [32]
    assert scanner.kernel_comms == {b"kworker/0:1", b"ksoftirqd/0"}
    assert [line.pid for line in scanner.scan(skip_comms={b"kworker/0:1"})] == [32]
    assert scanner.kernel_comms == {b"ksoftirqd/0"}


def test_stat_scanner_on_the_real_proc_agrees_with_parse_stat():
    mine = [line for line in procscan.StatScanner().scan() if line.pid == os.getpid()]
    stat = procfs.parse_stat(procfs.read_text(os.getpid(), "stat"))
    assert len(mine) == 1
    assert (mine[0].comm, mine[0].starttime) == (stat["comm"], stat["starttime"])
    assert mine[0].threads >= 1 and mine[0].rss_pages > 0
    assert not any(line.pid == 2 for line in procscan.StatScanner().scan())  # kthreadd


def test_stat_scanner_names_a_missing_root(tmp_path: Path):
    with pytest.raises(NumaError, match="No such file"):
        procscan.StatScanner(str(tmp_path / "gone")).scan()


def test_status_fields_in_one_pass_agree_with_one_field_at_a_time():
    text = Path("/proc/self/status").read_text()
    names = ("Uid", "Cpus_allowed_list", "Mems_allowed_list", "NoSuchField")
    found = procfs.parse_status_fields(text, names)
    assert found == {n: v for n in names if (v := procfs.parse_status_field(text, n)) is not None}
    assert set(found) == set(names) - {"NoSuchField"}
    # a prefix of another field's name is not that field
    assert procfs.parse_status_fields("Uidx:\t5\nUid:\t7\t7\t7\t7\n", ["Uid"]) == {"Uid": "7\t7\t7\t7"}
    assert procfs.parse_list("0-2,5") == frozenset({0, 1, 2, 5})
    assert procfs.parse_list("zero") is None and procfs.parse_list(None) is None
