"""A real Prometheus server (Debian package ``prometheus``) on loopback, for tests.

Stdlib only.  ``Prometheus(tmpdir, target="127.0.0.1:PORT")`` writes a config
that scrapes the target every second, starts ``/usr/bin/prometheus`` with its
TSDB under ``tmpdir`` (nothing under /var/lib/prometheus is used, so it runs on
a read-only root such as the VM's), waits for ``/-/ready`` and answers PromQL
with ``query(expr)``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

BINARY = os.environ.get("NUMAD_PROMETHEUS", "/usr/bin/prometheus")


# Loopback only: never through an http(s)_proxy from the environment (a CI machine's
# proxy cannot reach this host's 127.0.0.1, and the error would look like "not ready").
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary() -> str | None:
    return shutil.which(BINARY) if not os.path.isabs(BINARY) else (BINARY if os.access(BINARY, os.X_OK) else None)


class Prometheus:
    def __init__(self, tmpdir: Path, target: str, *, start_timeout: float = 120):
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = self.dir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: numad-py\n    scrape_interval: 1s\n    scrape_timeout: 1s\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        self.log_path = self.dir / "prometheus.log"
        self._log = open(self.log_path, "w")
        exe = binary()
        if exe is None:
            raise FileNotFoundError(f"{BINARY} not found: apt-get install prometheus")
        self.proc = subprocess.Popen(
            [exe, f"--config.file={config}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
             f"--web.console.templates={self.dir}", f"--web.console.libraries={self.dir}"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=str(self.dir),
        )
        deadline = time.monotonic() + start_timeout
        last_error = "no answer yet"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}:\n{self.log()}")
            try:
                with _LOCAL.open(self.url + "/-/ready", timeout=5) as r:
                    if r.status == 200:
                        break
                    last_error = f"HTTP {r.status}"
            except OSError as exc:  # refused while starting; anything else is reported below
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"prometheus not ready in {start_timeout}s at {self.url}/-/ready "
                                   f"(last probe: {last_error}):\n{self.log()}")
            time.sleep(0.5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def query(self, expr: str) -> list[dict]:
        """Instant query; returns data.result (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with _LOCAL.open(url, timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {body}")
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, or None if it returned nothing."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def targets_up(self) -> list[dict]:
        with _LOCAL.open(self.url + "/api/v1/targets", timeout=10) as r:
            return json.load(r)["data"]["activeTargets"]

    def wait_value(self, expr: str, at_least: float, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last is not None and last >= at_least:
                return last
            time.sleep(0.5)
        raise AssertionError(f"{expr} = {last} after {timeout}s, wanted >= {at_least}; "
                             f"targets: {self.targets_up()}\n{self.log()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
