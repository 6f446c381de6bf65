"""A real Prometheus server scrapes the daemon; PromQL sees the migrated bytes.

Inside the two-node VM: ``numad-py run`` (subprocess, metrics on a free
loopback port) moves a 32 MiB workload from node 0 to node 1 while
``/usr/bin/prometheus`` (Debian package ``prometheus``, TSDB in tmp) scrapes it
every second.  The query ``numad_migrated_bytes_total`` must then return at
least the workload's size for ``from="0", to="1"``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import numa_maps_of

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))
import prom

pytestmark = [pytest.mark.topology("two"), pytest.mark.kernel_independent]

NUMAD = str(Path(sys.executable).with_name("numad-py"))
MIB = 32
SEED = 4343


@pytest.fixture
def prometheus_binary():
    exe = prom.binary()
    if exe is None:
        pytest.fail(f"{prom.BINARY} missing: the VM uses the host's files, so install the Debian "
                    "package on the host (apt-get install prometheus)")
    return exe


def test_prometheus_scrapes_migrated_bytes(tmp_path, workload, prometheus_binary):
    child = workload("--mib", str(MIB), "--policy", "preferred", "--node", "0", "--seed", str(SEED))
    start, _ = child.region()
    assert sum(numa_maps_of(child.pid, start).values()) >= MIB << 20

    port = prom.free_port()
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "run").mkdir()
    config = tmp_path / "numad-py.toml"
    config.write_text(
        f'[daemon]\nscan_interval = "1s"\nruntime_dir = "{tmp_path}/run"\n'
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
        f'[control]\nsocket = "{tmp_path}/run/control.sock"\n'
    )
    (tmp_path / "rules.d" / "10-prom.toml").write_text(
        f'[[rule]]\nname = "prom"\nmatch.cmdline = "workload.py.*--seed {SEED}"\nnodes = "1"\n')
    log = open(tmp_path / "daemon.log", "w")
    daemon = subprocess.Popen([NUMAD, "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    server = None
    try:
        server = prom.Prometheus(tmp_path / "prom", f"127.0.0.1:{port}")
        # The workload ends up on node 1 (checked independently of the daemon).
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            per_node = numa_maps_of(child.pid, start)
            if per_node.get(1, 0) >= 0.99 * sum(per_node.values()):
                break
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
            time.sleep(0.5)
        else:
            pytest.fail(f"workload not moved: {per_node}\n{(tmp_path / 'daemon.log').read_text()}")

        # Prometheus scraped it: the exact counter, by its labels.
        value = server.wait_value('sum(numad_migrated_bytes_total{from="0",to="1"})', MIB << 20, timeout=60)
        series = server.query("numad_migrated_bytes_total")
        assert series, "numad_migrated_bytes_total returned no series"
        labels = [s["metric"] for s in series]
        assert all({"from", "to", "reason", "job", "instance"} <= set(m) for m in labels), labels
        assert any(m["from"] == "0" and m["to"] == "1" for m in labels), labels
        assert "pid" not in {k for m in labels for k in m}
        up = server.value(f'up{{instance="127.0.0.1:{port}"}}')
        assert up == 1.0
        assert value >= MIB << 20
    finally:
        if server is not None:
            server.stop()
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
        log.close()
