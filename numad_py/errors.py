"""The exception tree and the ONE place where an errno becomes an exception.

Callers sort failures by class, not by errno (irqbalance's habit):

* ``RetryLater``  — transient (memory pressure, busy): try again next tick;
* ``SkipProcess`` — this process cannot be handled (permission, bad node...);
* ``ProcessGone`` — the process exited or its pid was reused: normal, not an error.
"""

from __future__ import annotations

import errno as _errno
import os

TYPE_CHECKING = False  # collections.abc imports collections: a light command's start-up pays it
if TYPE_CHECKING:
    from collections.abc import Callable


class NumaError(Exception):
    """Base of every error numad-py raises on purpose."""

    errno: int | None = None

    def __init__(self, message: str, *, errno: int | None = None):
        super().__init__(message)
        if errno is not None:
            self.errno = errno


class InvalidArgument(NumaError, ValueError):
    """Bad input from the caller: a node list, a range, a pid, a mapping name."""


class RetryLater(NumaError):
    """Transient kernel refusal (ENOMEM, EAGAIN, EBUSY): the next attempt may work."""


class SkipProcess(NumaError):
    """This process cannot be acted on; others can."""


class ProcessGone(SkipProcess):
    """The process exited (or its pid now belongs to another process)."""


class PermissionDenied(SkipProcess):
    """The caller lacks a privilege; ``capability`` names the one missing."""

    def __init__(self, message: str, *, capability: str, errno: int | None = _errno.EPERM):
        super().__init__(f"{message}: needs {capability}", errno=errno)
        self.capability = capability


class InvalidNode(SkipProcess, ValueError):
    """A node that does not exist, has no memory, or is outside the allowed set."""


class Unsupported(NumaError):
    """The running kernel lacks a feature (preferred-many, weighted interleave, home node)."""


# Which privilege each operation needs, for the PermissionDenied message.
CAPABILITY_FOR = {
    "move_pages": "ptrace read access to the target (same uid, or CAP_SYS_PTRACE) "
                  "and CAP_SYS_NICE for other users' processes",
    "move_pages_all": "CAP_SYS_NICE (move-all also moves shared pages)",
    "migrate_pages": "CAP_SYS_NICE unless the target runs as your uid, plus ptrace read access",
    "read_maps": "ptrace read access to the target (same uid, or CAP_SYS_PTRACE)",
    "sched_setaffinity": "CAP_SYS_NICE for another user's process",
}


def raise_for_errno(err: int, *, op: str, pid: int | None = None, detail: str = "",
                    exiting: Callable[[int], bool] | None = None) -> None:
    """Raise the exception that ``err`` means for ``op`` (a syscall name).

    Read ``ffi.errno`` once, right after the call, and pass it here.
    ``exiting(pid)`` tells whether the target has released its address space
    (``procfs.address_space_released``): then EINVAL from move_pages or
    migrate_pages means the process is exiting.  This module reads nothing
    itself, so it stays at the bottom of the package.
    """
    target = f" pid {pid}" if pid else ""
    text = f"{op}{target}: {os.strerror(err)}" + (f" ({detail})" if detail else "")
    if err == _errno.ESRCH:
        raise ProcessGone(f"process{target} is gone ({op})", errno=err)
    if err in (_errno.EPERM, _errno.EACCES):
        raise PermissionDenied(text, capability=CAPABILITY_FOR.get(op, "root"), errno=err)
    if err == _errno.ENODEV:
        raise InvalidNode(f"{text}: a target node has no memory or does not exist", errno=err)
    if err == _errno.ENOSYS:
        raise Unsupported(f"{op} is unsupported on this kernel", errno=err)
    if err in (_errno.ENOMEM, _errno.EAGAIN, _errno.EBUSY, _errno.EINTR):
        raise RetryLater(text, errno=err)
    if (err == _errno.EINVAL and pid and exiting is not None
            and op in ("move_pages", "move_pages_all", "migrate_pages") and exiting(pid)):
        # The kernel found the task but no mm: it is exiting (or a zombie).
        raise ProcessGone(f"process{target} is exiting ({op})", errno=err)
    if err in (_errno.EINVAL, _errno.E2BIG, _errno.EFAULT):
        raise InvalidArgument(text, errno=err)
    raise NumaError(text, errno=err)


def classify(exc: BaseException) -> str:
    """``"gone"``, ``"skip"`` or ``"retry"``: what the executor does next."""
    if isinstance(exc, ProcessGone):
        return "gone"
    if isinstance(exc, RetryLater):
        return "retry"
    return "skip"


# Names for per-page errno outcomes reported by move_pages.
PAGE_OUTCOME = {
    _errno.EACCES: "shared",        # mapped by several processes; needs move-all
    _errno.EBUSY: "busy",           # locked, under I/O or pinned right now
    _errno.EFAULT: "fault",         # zero page or a special mapping
    _errno.EIO: "io",               # writeback failed
    _errno.EINVAL: "unmovable",     # dirty page on an FS without migratepage
    _errno.ENOENT: "not_present",   # never touched
    _errno.ENOMEM: "no_memory",     # target node full
    _errno.E2BIG: "too_big",
}


def page_outcome_name(err: int) -> str:
    return PAGE_OUTCOME.get(err, _errno.errorcode.get(err, f"errno{err}").lower())
