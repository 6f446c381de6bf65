"""The daemon's status.json, read when its control socket does not answer.

The file outlives a daemon that was killed, so it is never taken as proof
that a daemon runs: its ``pid`` and ``start_time`` must name a live process.
"""

from __future__ import annotations

import os

from ..errors import NumaError

from ..defaults import RUNTIME_DIR as DEFAULT_RUNTIME_DIR  # written once

TYPE_CHECKING = False  # typing itself costs a CLI start-up; mypy reads this name as true
if TYPE_CHECKING:
    from typing import Any

# procfs and the daemon's runtime module (dataclasses, logging, tempfile) are imported
# only on the paths that need them: `status` runs at start-up cost.


def read_status(runtime_dir: str | None = None) -> dict[str, Any]:
    """The first status file found, with ``_path`` set; only ``_looked_in`` when there is none."""
    if runtime_dir:
        places = [runtime_dir]
    else:
        from ..daemon.runtime import runtime_dir_candidates
        places = [str(p) for p in runtime_dir_candidates(DEFAULT_RUNTIME_DIR)]
    for place in places:
        path = os.path.join(place, "status.json")
        try:
            with open(path) as f:
                text = f.read()
            import json      # only for a file found: json (re, enum) costs more than half a start-up
            data = json.loads(text)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise NumaError(f"cannot read {path}: {exc}") from None
        if isinstance(data, dict):
            data["_path"] = path
            return data
    return {"_looked_in": places}


def daemon_state(data: dict[str, Any]) -> str:
    """``"running"``, or why not, in words."""
    if "_path" not in data:
        return "no control socket answers and no status file in " + ", ".join(data.get("_looked_in", []))
    pid = data.get("pid")
    started = data.get("start_time")
    if not isinstance(pid, int) or pid <= 0:
        return f"{data['_path']} names no daemon pid"
    from .. import procfs
    try:
        now = procfs.start_time(pid)
    except NumaError:
        return f"pid {pid} from {data['_path']} has exited (the file is left from a daemon that stopped)"
    if isinstance(started, (int, float)) and abs(now - started) > 0.05:
        return f"pid {pid} from {data['_path']} now belongs to another process (the daemon exited)"
    return "running"
