"""Where runtime files go, and what this process is allowed to do.

As root the daemon uses /run/numad-py; as an ordinary user it still starts,
under $XDG_RUNTIME_DIR or a temp dir, and says which actions it cannot take.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("numad_py.daemon")

CAP_SYS_NICE = 23
CAP_SYS_PTRACE = 19


def usable_dir(preferred: str, purpose: str) -> Path:
    """``preferred`` if it can be created and written, else a per-user fallback."""
    for candidate in runtime_dir_candidates(preferred):
        try:
            candidate.mkdir(parents=True, exist_ok=True, mode=0o755)
            probe = candidate / ".numad-py-probe"
            probe.write_text("")
            probe.unlink()
        except OSError:
            continue
        if candidate != Path(preferred):
            log.warning("cannot write %s; using %s for %s", preferred, candidate, purpose)
        return candidate
    raise OSError(f"no writable directory for {purpose} (tried {preferred})")


def runtime_dir_candidates(preferred: str):
    yield Path(preferred)
    base = Path(preferred).name or "numad-py"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        yield Path(xdg) / base
    yield Path(tempfile.gettempdir()) / f"{base}-{os.getuid()}"


def effective_capabilities(status_path: str = "/proc/self/status") -> int:
    for line in Path(status_path).read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


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
