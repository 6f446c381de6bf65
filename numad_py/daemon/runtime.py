"""Where runtime files go, and what this process is allowed to do.

As root the daemon uses /run/numad-py; as an ordinary user it still starts,
under $XDG_RUNTIME_DIR/numad-py or /tmp/numad-py-UID, and says which actions
it cannot take.

A directory is only used if it is safe (issue 18 item 2: a daemon wrote
through another user's planted /tmp dir and symlink): it must be a real
directory (not a symlink), owned by our effective uid, and writable by
nobody else.  The per-user fallbacks must moreover be private (0700).  A
directory that fails is never reused: the next candidate is tried, and if
none is left the daemon refuses to start with a one-line reason.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import procfs

log = logging.getLogger("numad_py.daemon")

CAP_SYS_NICE = 23
CAP_SYS_PTRACE = 19
# The configured directory stays traversable by everyone: the fork-time shim in
# every user's processes reads its node table there.  Fallbacks are private.
SHARED_MODE = 0o755
PRIVATE_MODE = 0o700


class UnsafeDirectory(OSError):
    """A directory we will not use; the message says why, in one line."""


@dataclass(frozen=True)
class RuntimeDir:
    path: Path
    created: bool          # made by this process (removed again if start-up fails and it is empty)
    preferred: bool        # the configured directory, not a fallback

    def remove_if_empty(self) -> None:
        if self.created:
            try:
                os.rmdir(self.path)
            except OSError:
                pass


def safe_dir(path: Path, *, mode: int, private: bool, parents: bool = False) -> RuntimeDir:
    """Create ``path`` with ``mode`` or check the existing one; UnsafeDirectory if it is not ours."""
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True, mode=SHARED_MODE)
    created = False
    try:
        os.mkdir(path, mode)
        created = True
    except FileExistsError:
        pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeDirectory(f"{path} is a symlink or not a directory; not using it") from None
        raise
    try:
        st = os.fstat(fd)
        if created:
            os.fchmod(fd, mode)       # mkdir's mode went through the umask
            st = os.fstat(fd)
        _check(path, st, private=private)
    finally:
        os.close(fd)
    return RuntimeDir(path=path, created=created, preferred=not private)


def _check(path: Path, st: os.stat_result, *, private: bool) -> None:
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{path} is not a directory; not using it")
    if st.st_uid != os.geteuid():
        raise UnsafeDirectory(f"{path} belongs to uid {st.st_uid}, not to this user "
                              f"(uid {os.geteuid()}); not using it")
    bits = stat.S_IMODE(st.st_mode)
    if bits & (0o077 if private else 0o022):
        raise UnsafeDirectory(f"{path} has mode {bits:04o}, open to other users; not using it")


def runtime_dir_candidates(preferred: str):
    """The configured directory, then the per-user fallbacks (the CLI looks in the same places)."""
    yield Path(preferred)
    base = Path(preferred).name or "numad-py"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        yield Path(xdg) / base
    yield Path(tempfile.gettempdir()) / f"{base}-{os.getuid()}"


def choose_runtime_dir(preferred: str) -> RuntimeDir:
    """The first safe candidate; OSError naming every refusal if none is."""
    refusals = []
    for candidate in runtime_dir_candidates(preferred):
        is_preferred = candidate == Path(preferred)
        try:
            chosen = safe_dir(candidate, mode=SHARED_MODE if is_preferred else PRIVATE_MODE,
                              private=not is_preferred, parents=is_preferred)
            _probe(candidate)
        except UnsafeDirectory as exc:
            if not is_preferred:
                log.warning("%s", exc)
            refusals.append(str(exc))
            continue
        except OSError as exc:
            refusals.append(f"{candidate}: {exc.strerror or exc}")
            continue
        if not is_preferred:
            log.warning("cannot use %s (%s); runtime files go to %s", preferred, refusals[0], candidate)
        return chosen
    raise OSError(f"no safe directory for runtime files: {'; '.join(refusals)}")


def _probe(path: Path) -> None:
    """Writable by us (a root-owned dir on a read-only mount is not)."""
    probe = path / f".numad-py-probe.{os.getpid()}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)
    os.unlink(probe)


def effective_capabilities() -> int:
    line = procfs.parse_status_field(procfs.read_text("self", "status"), "CapEff")
    return int(line, 16) if line else 0


def privilege_limits() -> list[str]:
    """Plain sentences about what this process cannot do; empty when it can do everything."""
    caps = effective_capabilities()
    limits = []
    if not caps >> CAP_SYS_NICE & 1:
        limits.append("no CAP_SYS_NICE: cannot move other users' pages, use move-all for shared "
                      "pages, or pin other users' threads; rules acting on them will be skipped")
    if not caps >> CAP_SYS_PTRACE & 1:
        limits.append("no CAP_SYS_PTRACE: cannot read the memory maps of other users' processes")
    return limits
