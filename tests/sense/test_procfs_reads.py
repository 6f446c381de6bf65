"""procfs additions used by sense/ and numa: on a fake tree and on real processes."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from numad_py import procfs
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
