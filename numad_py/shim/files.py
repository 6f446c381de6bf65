"""Writing the files the shim reads: a fresh temp file, then rename over the path.

The temp file is created with O_EXCL|O_NOFOLLOW, so a name planted in the
directory (a symlink to someone's file) is never written through; rename
replaces a planted symlink at the path itself, not its target.
"""

from __future__ import annotations

import os
from pathlib import Path


def replace_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)       # left by a crashed writer with our pid (or planted)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
