"""The one errno map: what a failed call's errno means, on real processes of this host."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from numad_py import procfs
from numad_py.errors import InvalidArgument, PermissionDenied, ProcessGone, RetryLater, classify, raise_for_errno
from numad_py.numa import raise_syscall_error


def _zombie() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "child never became a zombie"
        time.sleep(0.01)
    return pid


def test_einval_from_an_exiting_process_means_gone():
    # move_pages on a task without an mm fails EINVAL for the whole call.
    pid = _zombie()
    try:
        with pytest.raises(ProcessGone) as info:
            raise_for_errno(errno.EINVAL, op="move_pages", pid=pid, exiting=procfs.address_space_released)
        assert classify(info.value) == "gone" and "exiting" in str(info.value)
        with pytest.raises(ProcessGone):   # what the binding raises for its calls
            raise_syscall_error(errno.EINVAL, op="migrate_pages", pid=pid)
        with pytest.raises(InvalidArgument):  # without the probe the map reads nothing: a bad argument
            raise_for_errno(errno.EINVAL, op="move_pages", pid=pid)
    finally:
        os.waitpid(pid, 0)


def _kernel_thread() -> int | None:
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rpartition(")")[2].split()[6]) & 0x00200000:
                return int(entry.name)
        except OSError:
            continue
    return None


def test_einval_from_a_live_process_or_kernel_thread_stays_invalid():
    pids = [os.getpid()] + [p for p in [_kernel_thread()] if p is not None]   # a kthread never had user memory
    for pid in pids:
        with pytest.raises(InvalidArgument):
            raise_syscall_error(errno.EINVAL, op="move_pages", pid=pid)


@pytest.mark.parametrize("err, exc, verdict", [
    (errno.ESRCH, ProcessGone, "gone"), (errno.EPERM, PermissionDenied, "skip"),
    (errno.ENOMEM, RetryLater, "retry"), (errno.EBUSY, RetryLater, "retry"),
])
def test_call_errno_classes(err, exc, verdict):
    with pytest.raises(exc) as info:
        raise_for_errno(err, op="move_pages", pid=os.getpid())
    assert classify(info.value) == verdict
