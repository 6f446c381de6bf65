"""Read the running daemon's status (status.json in its runtime dir)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import NumaError
from ..daemon.runtime import runtime_dir_candidates

from ..defaults import RUNTIME_DIR as DEFAULT_RUNTIME_DIR  # written once


def read_status(runtime_dir: str | None = None) -> dict:
    places = [Path(runtime_dir)] if runtime_dir else list(runtime_dir_candidates(DEFAULT_RUNTIME_DIR))
    for place in places:
        path = place / "status.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise NumaError(f"cannot read {path}: {exc}") from None
    raise NumaError("no running numad-py found (looked in " + ", ".join(str(p) for p in places) + ")")
