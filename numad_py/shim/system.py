"""System-wide mode: the shim's line in ``/etc/ld.so.preload``, added and removed safely.

With the line in place every new dynamically linked process loads the shim;
the daemon's rules file (through its gate, see :mod:`.gate`) decides which
programs' children are placed, and the rest stay dormant.  The file is
edited as ld.so reads it (glibc ``rtld.c``: names separated by whitespace or
``:``, ``#`` starts a comment):

* install appends one line with the library's absolute path; every other
  entry, comment and byte stays where it was.  An entry naming another
  ``libnumad_shim.so`` (an older install) is replaced in place.  Installing
  twice changes nothing.
* uninstall removes every entry naming ``libnumad_shim.so`` (or the given
  path) and nothing else.  A file that install created (it starts with the
  :data:`CREATED_MARK` comment) and that holds nothing else afterwards is
  removed; any other file is kept, even if no entry is left in it.
* writes are atomic: a temp file in the same directory with the old file's
  mode and owner, fsync, rename over the path, fsync of the directory.  Two
  numad-py processes editing at once are serialised by a lock on the directory.
* install first preloads the library into a child (``cat /proc/self/maps``
  with ``LD_PRELOAD``) and refuses unless the child ran and mapped it, so a
  line that would make every program print a loader error is never written.

``root`` (``--root DIR``) edits ``DIR/etc/ld.so.preload`` instead, for tests.
"""

from __future__ import annotations

from dataclasses import dataclass
import fcntl
import os
from pathlib import Path
import re
import stat
import subprocess

from .locate import LIBRARY_NAME, ShimError, shim_path

PRELOAD_FILE = Path("etc/ld.so.preload")
CREATED_MARK = b"# created by `numad-py shim install-system`; `uninstall-system` removes it when it holds nothing else\n"
MAX_BYTES = 1 << 20                      # ld.so.preload is a few lines; more is not that file
_SEPARATORS = re.compile(rb"[\s:]+")


class SystemShimError(ShimError):
    """install-system / uninstall-system cannot do what was asked; the file is unchanged."""


@dataclass(frozen=True)
class Change:
    """What install/uninstall did: ``action`` is installed | already | removed | absent."""

    path: Path
    library: str
    action: str
    file_removed: bool = False

    def describe(self) -> str:
        where = str(self.path)
        return {
            "installed": f"{self.library} added to {where}: every new dynamically linked process "
                         "loads the shim (`numad-py shim uninstall-system` removes it)",
            "already": f"{self.library} is already in {where}: nothing changed",
            "removed": f"{self.library} removed from {where}"
                       + (" (the file held nothing else and was removed)" if self.file_removed else ""),
            "absent": f"no numad-py shim in {where}: nothing changed",
        }[self.action]


def preload_path(root: str | os.PathLike = "/") -> Path:
    return Path(root) / PRELOAD_FILE


def _entries(line: bytes) -> list[bytes]:
    """The library names ld.so reads on this line (comment dropped)."""
    return [e for e in _SEPARATORS.split(line.split(b"#", 1)[0]) if e]


def _ours(entry: bytes, library: bytes) -> bool:
    return entry == library or os.path.basename(entry) == LIBRARY_NAME.encode()


def _without(line: bytes, library: bytes) -> bytes | None:
    """The line with our entries removed; None to drop it whole; the line itself if untouched."""
    entries = _entries(line)
    kept = [e for e in entries if not _ours(e, library)]
    if len(kept) == len(entries):
        return line
    body, hash_, comment = line.rstrip(b"\n").partition(b"#")
    if not kept and not comment.strip():
        return None
    return b" ".join(kept) + (b" " if kept and hash_ else b"") + hash_ + comment + b"\n"


def added(text: bytes, library: bytes, created: bool) -> bytes | None:
    """``text`` with the library's line added (None: already there). Pure."""
    lines = text.splitlines(keepends=True)
    if any(e == library for line in lines for e in _entries(line)):
        return None
    out, placed = [], False
    for line in lines:
        new = _without(line, library)
        if new is not line and not placed:        # an older copy of the shim: take its place
            out.append(library + b"\n")
            placed = True
        if new is not None:
            out.append(new)
    if not placed:
        if out and not out[-1].endswith(b"\n"):
            out[-1] += b"\n"
        out.append(library + b"\n")
    return (CREATED_MARK if created else b"") + b"".join(out)


def removed(text: bytes, library: bytes) -> bytes | None:
    """``text`` without our entries (None: there were none). Pure."""
    lines = text.splitlines(keepends=True)
    out = [new for line in lines if (new := _without(line, library)) is not None]
    return None if out == lines else b"".join(out)


def _check_library(library: Path) -> None:
    text = str(library)
    if not library.is_absolute():
        raise SystemShimError(f"{text}: the library path must be absolute (ld.so resolves it in every process)")
    if _SEPARATORS.search(text.encode()) or "#" in text:
        raise SystemShimError(f"{text}: ld.so.preload splits names at whitespace, ':' and '#'; "
                              "install the library under a path without them")
    try:
        st = library.stat()
    except OSError as exc:
        raise SystemShimError(f"{text}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SystemShimError(f"{text}: not a regular file")
    if st.st_mode & 0o022 or st.st_uid not in (0, os.geteuid()):
        raise SystemShimError(f"{text}: writable by others or owned by another user; every process "
                              "on the machine would run its code (chmod go-w, chown root)")
    if not st.st_mode & 0o004:
        raise SystemShimError(f"{text}: not readable by every user; their programs would print a loader "
                              "error at each start (chmod a+r)")
    _check_directories(library)
    _check_loads(library)


def _check_directories(library: Path) -> None:
    """Every directory above the library: searchable by all (else every other user's
    programs print a loader error), and nobody but root or us can swap the file."""
    for directory in library.parents:
        st = directory.stat()
        if not st.st_mode & 0o001:
            raise SystemShimError(f"{directory} is not searchable by every user; their programs would print "
                                  "a loader error at each start (chmod o+x, or install the library elsewhere)")
        swappable = st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX
        if swappable or st.st_uid not in (0, os.geteuid()):
            raise SystemShimError(f"{directory} is writable by others or owned by another user: they could "
                                  "replace the library every process loads")


def _check_loads(library: Path) -> None:
    """Preload the library into a child with a clean environment; it must run and map it."""
    env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": str(library)}
    try:
        out = subprocess.run(["cat", "/proc/self/maps"], env=env, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SystemShimError(f"cannot run a test process with {library} preloaded: {exc}") from None
    if out.returncode != 0 or str(library).encode() not in out.stdout:
        why = out.stderr.decode(errors="replace").strip().splitlines()
        raise SystemShimError(f"{library} cannot be preloaded: "
                              + (why[-1] if why else f"a test process exited with status {out.returncode}"))


def _read(path: Path) -> tuple[bytes, os.stat_result | None]:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return b"", None
    except OSError as exc:
        raise SystemShimError(f"{path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise SystemShimError(f"{path} is a symbolic link; edit {os.readlink(path)} or replace the link")
    if not stat.S_ISREG(st.st_mode):
        raise SystemShimError(f"{path}: not a regular file")
    if st.st_size > MAX_BYTES:
        raise SystemShimError(f"{path}: {st.st_size} bytes; not an ld.so.preload list, left alone")
    try:
        return path.read_bytes(), st
    except OSError as exc:
        raise SystemShimError(f"cannot read {path}: {exc.strerror}") from None


def _write(path: Path, data: bytes, old: os.stat_result | None) -> None:
    """Replace ``path`` with ``data`` atomically, keeping its mode and owner."""
    tmp = path.with_name(f".{path.name}.numad-py.{os.getpid()}.tmp")
    mode = stat.S_IMODE(old.st_mode) if old else 0o644
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if old is not None and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                    os.fchown(f.fileno(), old.st_uid, old.st_gid)
                os.fchmod(f.fileno(), mode)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
    except OSError as exc:
        raise SystemShimError(f"cannot write {path}: {exc.strerror or exc}"
                              + (" (writing it needs root)" if exc.errno in (1, 13) else "")) from None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _DirLock:
    """flock on the file's directory: two numad-py edits never interleave."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.fd = -1

    def __enter__(self) -> _DirLock:
        try:
            self.fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise SystemShimError(f"{self.directory}: {exc.strerror}") from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def install_system(root: str | os.PathLike = "/", library: str | os.PathLike | None = None) -> Change:
    """Add the shim's line to ``root``/etc/ld.so.preload (see the module doc)."""
    lib = Path(library) if library is not None else shim_path()
    _check_library(lib)
    path = preload_path(root)
    with _DirLock(path.parent):
        text, st = _read(path)
        new = added(text, str(lib).encode(), created=st is None)
        if new is None:
            return Change(path, str(lib), "already")
        _write(path, new, st)
    return Change(path, str(lib), "installed")


def uninstall_system(root: str | os.PathLike = "/", library: str | os.PathLike | None = None) -> Change:
    """Remove every numad-py shim entry from ``root``/etc/ld.so.preload (see the module doc)."""
    if library is not None:
        lib = str(library)
    else:
        try:
            lib = str(shim_path())
        except ShimError:
            lib = LIBRARY_NAME          # not built here: entries are still matched by name
    path = preload_path(root)
    if not path.parent.is_dir():
        return Change(path, lib, "absent")
    with _DirLock(path.parent):
        text, st = _read(path)
        new = removed(text, lib.encode())
        if new is None or st is None:
            return Change(path, lib, "absent")
        if _only_our_mark(new):
            try:
                path.unlink()
                _fsync_dir(path.parent)
            except OSError as exc:
                raise SystemShimError(f"cannot remove {path}: {exc.strerror}") from None
            return Change(path, lib, "removed", file_removed=True)
        _write(path, new, st)
    return Change(path, lib, "removed")


def _only_our_mark(text: bytes) -> bool:
    """A file install created (its first line is our mark) with nothing else left in it."""
    return text.startswith(CREATED_MARK) and not text[len(CREATED_MARK):].strip()
