"""A real ``numad-py run`` subprocess on the host, on its own config dir, with its log."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

NUMAD = str(Path(sys.executable).with_name("numad-py"))


def write_config(tmp: Path, *, interval: str = "200ms", listen: str = "", extra: str = "") -> Path:
    (tmp / "rules.d").mkdir(exist_ok=True)
    config = tmp / "numad-py.toml"
    config.write_text(f'[daemon]\nscan_interval = "{interval}"\nruntime_dir = "{tmp}/run"\n'
                      f'state_dir = "{tmp}/state"\n{extra}\n'
                      f'[metrics]\nlisten = "{listen}"\n[control]\nsocket = "{tmp}/run/control.sock"\n')
    return config


class RunningDaemon:
    def __init__(self, tmp: Path, *args: str, config: Path | None = None):
        self.dir = tmp
        self.config = config or write_config(tmp)
        self.log_path = tmp / f"daemon-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([NUMAD, "run", "--config", str(self.config), *args],
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.log())) >= count:
                return
            assert self.proc.poll() is None, f"daemon exited ({self.proc.returncode}):\n{self.log()}"
            time.sleep(0.05)
        raise AssertionError(f"no {count}x {pattern!r} within {timeout}s:\n{self.log()}")

    def status(self, timeout: float = 10) -> dict:
        """The status file, once the first tick has written it."""
        path = self.dir / "run" / "status.json"
        deadline = time.monotonic() + timeout
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return json.loads(path.read_text())

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=timeout)
        self._log.close()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
