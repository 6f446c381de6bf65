"""numad_py.metrics: what a scrape shows after the daemon records events (host tests)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from numad_py.metrics import Metrics, NumadCollector, REASONS
from numad_py.numa import MigrationResult

ON_CI = os.environ.get("CI") == "true"


def make_sysfs(root: Path, nodes: dict[int, tuple[str, int, int]]) -> Path:
    """A literal /sys: ``nodes`` = {id: (cpulist, MemTotal kB, MemFree kB)}, as topology.py reads it."""
    base = root / "devices/system/node"
    base.mkdir(parents=True)
    ids = sorted(nodes)
    (base / "online").write_text(",".join(str(i) for i in ids) + "\n")
    for i in ids:
        cpulist, total_kb, free_kb = nodes[i]
        d = base / f"node{i}"
        d.mkdir()
        (d / "cpulist").write_text(cpulist + "\n")
        (d / "meminfo").write_text(
            f"Node {i} MemTotal:       {total_kb} kB\n"
            f"Node {i} MemFree:        {free_kb} kB\n"
            f"Node {i} MemUsed:        {total_kb - free_kb} kB\n"
            f"Node {i} FilePages:          0 kB\n")
        (d / "distance").write_text(" ".join("10" if j == i else "20" for j in ids) + "\n")
    return root


@pytest.fixture
def sysfs(tmp_path):
    # Node 2 is memory-only; node ids are not contiguous (1 is offline).
    return make_sysfs(tmp_path / "sys", {0: ("0-1", 1048576, 524288), 2: ("", 2097152, 2000000), 3: ("2,3", 4096, 0)})


STATE = {
    "time": 1700000000.5,
    "numa_balancing": 0,
    "processes": 42,
    "rules": {
        "db": {"processes": 3, "resident_bytes": {0: 1 << 30, "2": 8192}},
        "idle": {"processes": 0, "resident_bytes": {}},
        "cxl": {"processes": 0, "resident_bytes": {}, "inactive": "inactive here: this machine has no memory-only node"},
    },
}


def result(**kw) -> MigrationResult:
    base = dict(pid=1234, target=frozenset({1}), pages_requested=100, moved=80, already=10, not_present=4,
                failed=Counter(shared=5, busy=1), seconds=0.25, longest_call_seconds=0.003, calls=4,
                page_size=4096)
    base.update(kw)
    return MigrationResult(**base)


def families(metrics: Metrics) -> dict:
    return {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}


def samples(metrics: Metrics, name: str) -> dict[tuple, float]:
    """sample name -> {sorted label items: value} for one sample name across families."""
    out = {}
    for fam in families(metrics).values():
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


@pytest.fixture
def metrics(sysfs):
    return Metrics(CollectorRegistry(), sys_root=sysfs, state_provider=lambda: STATE)


def test_migration_counts_pages_and_bytes_by_from_to_reason(metrics):
    metrics.record_migration(result(), source="0,2", target="1", reason="request")
    metrics.record_migration(result(moved=20, page_size=65536), source={0, 2}, target=[1], reason="request")
    metrics.record_migration(result(moved=1), source="1", target="0", reason="drain")

    pages = samples(metrics, "numad_migrated_pages_total")
    assert pages[(("from", "0,2"), ("reason", "request"), ("to", "1"))] == 100
    assert pages[(("from", "1"), ("reason", "drain"), ("to", "0"))] == 1
    assert samples(metrics, "numad_migrated_bytes_total")[(("from", "0,2"), ("reason", "request"), ("to", "1"))] == (
        80 * 4096 + 20 * 65536)
    failed = samples(metrics, "numad_migration_failed_pages_total")
    assert failed[(("outcome", "shared"), ("reason", "request"))] == 10
    assert failed[(("outcome", "busy"), ("reason", "drain"))] == 1
    assert samples(metrics, "numad_migration_already_placed_pages_total")[(("reason", "request"),)] == 20
    assert samples(metrics, "numad_migrations_total")[(("reason", "request"),)] == 2
    assert samples(metrics, "numad_migration_duration_seconds_count")[(("reason", "drain"),)] == 1
    assert samples(metrics, "numad_migration_duration_seconds_sum")[(("reason", "request"),)] == pytest.approx(0.5)
    # The longest call of each migration went into the stall histogram: 3 ms lands in le=0.005, not 0.0025.
    stall = samples(metrics, "numad_migration_stall_seconds_bucket")
    assert stall[(("le", "0.0025"),)] == 0
    assert stall[(("le", "0.005"),)] == 3
    assert samples(metrics, "numad_migration_stall_seconds_count")[()] == 3


def test_node_lists_are_written_as_numactl_does(metrics):
    metrics.record_migration(result(), source=range(0, 4), target=5, reason="auto")
    assert (("from", "0-3"), ("reason", "auto"), ("to", "5")) in samples(metrics, "numad_migrated_pages_total")


def test_stall_can_be_observed_per_call_instead(metrics):
    metrics.observe_stall(0.0002)
    metrics.observe_stall(0.8)
    metrics.record_migration(result(), source="0", target="1", reason="schedule", stall=False)
    stall = samples(metrics, "numad_migration_stall_seconds_bucket")
    assert stall[(("le", "0.0001"),)] == 0
    assert stall[(("le", "0.00025"),)] == 1
    assert stall[(("le", "0.5"),)] == 1
    assert stall[(("le", "1.0"),)] == 2
    assert samples(metrics, "numad_migration_stall_seconds_count")[()] == 2


def test_a_migration_that_moved_nothing_still_counts_as_one(metrics):
    metrics.record_migration(result(moved=0, failed=Counter(), calls=0), source="0", target="1", reason="schedule")
    assert samples(metrics, "numad_migrations_total")[(("reason", "schedule"),)] == 1
    assert not samples(metrics, "numad_migrated_pages_total")
    assert samples(metrics, "numad_migration_stall_seconds_count")[()] == 0   # no syscall, no stall


def test_unknown_reason_is_counted_as_other_not_raised(metrics, caplog):
    metrics.record_migration(result(), source="0", target="1", reason="typo")
    metrics.record_migration(result(), source="0", target="1", reason="typo")
    assert samples(metrics, "numad_migrations_total")[(("reason", "other"),)] == 2
    assert sum("typo" in r.message for r in caplog.records) == 1   # warned once


def test_scans_reloads_requests(metrics):
    metrics.record_scan(0.02)
    metrics.record_scan(0.5)
    assert samples(metrics, "numad_scans_total")[()] == 2
    assert samples(metrics, "numad_scan_duration_seconds_sum")[()] == pytest.approx(0.52)

    reloads = samples(metrics, "numad_config_reloads_total")
    assert reloads == {(("result", "ok"),): 0, (("result", "error"),): 0}   # exported from the start
    metrics.record_reload(True, 1700000100.0)
    metrics.record_reload(False, 1700000200.0)
    reloads = samples(metrics, "numad_config_reloads_total")
    assert reloads == {(("result", "ok"),): 1, (("result", "error"),): 1}
    assert samples(metrics, "numad_config_last_reload_success_timestamp_seconds")[()] == 1700000100.0
    assert samples(metrics, "numad_config_last_reload_successful")[()] == 0
    metrics.record_reload(True, 1700000300.0)
    assert samples(metrics, "numad_config_last_reload_successful")[()] == 1

    metrics.record_request("migrate", "ok")
    metrics.record_request("migrate", "ok")
    metrics.record_request("status", "weird")
    req = samples(metrics, "numad_control_requests_total")
    assert req[(("op", "migrate"), ("result", "ok"))] == 2
    assert req[(("op", "status"), ("result", "error"))] == 1


def test_build_info(metrics):
    import numad_py

    info = samples(metrics, "numad_build_info")
    (labels, value), = info.items()
    assert dict(labels)["version"] == numad_py.__version__
    assert value == 1


def test_per_node_memory_from_a_literal_sysfs(metrics):
    total = samples(metrics, "numad_node_memory_total_bytes")
    free = samples(metrics, "numad_node_memory_free_bytes")
    assert total == {(("node", "0"),): 1048576 * 1024, (("node", "2"),): 2097152 * 1024, (("node", "3"),): 4096 * 1024}
    assert free == {(("node", "0"),): 524288 * 1024, (("node", "2"),): 2000000 * 1024, (("node", "3"),): 0}
    assert samples(metrics, "numad_node_cpus") == {(("node", "0"),): 2, (("node", "2"),): 0, (("node", "3"),): 2}


def test_host_shape_and_memory_tiers(metrics, sysfs):
    # Without tiers: the shape from CPUs alone.
    assert samples(metrics, "numad_host_nodes") == {(("kind", "cpu"),): 2, (("kind", "memory_only"),): 1,
                                                    (("kind", "slow_tier"),): 0}
    assert samples(metrics, "numad_node_memory_tier") == {}
    tiers = sysfs / "devices/virtual/memory_tiering"
    for name, nodelist in (("memory_tier4", "0,3"), ("memory_tier72", "2")):
        (tiers / name).mkdir(parents=True)
        (tiers / name / "nodelist").write_text(nodelist + "\n")
    assert samples(metrics, "numad_host_nodes")[(("kind", "slow_tier"),)] == 1
    assert samples(metrics, "numad_node_memory_tier") == {(("node", "0"),): 4, (("node", "2"),): 72, (("node", "3"),): 4}


def test_per_node_memory_is_read_at_scrape_time(metrics, sysfs):
    assert samples(metrics, "numad_node_memory_free_bytes")[(("node", "0"),)] == 524288 * 1024
    meminfo = sysfs / "devices/system/node/node0/meminfo"
    meminfo.write_text(meminfo.read_text().replace("MemFree:        524288", "MemFree:        1000"))
    assert samples(metrics, "numad_node_memory_free_bytes")[(("node", "0"),)] == 1000 * 1024


def test_state_provider_view(metrics):
    assert samples(metrics, "numad_rule_resident_bytes") == {
        (("node", "0"), ("rule", "db")): 1 << 30,
        (("node", "2"), ("rule", "db")): 8192,
    }
    assert samples(metrics, "numad_rule_processes") == {(("rule", "db"),): 3, (("rule", "idle"),): 0,
                                                        (("rule", "cxl"),): 0}
    assert samples(metrics, "numad_rule_active") == {(("rule", "db"),): 1, (("rule", "idle"),): 1,
                                                     (("rule", "cxl"),): 0}
    assert samples(metrics, "numad_numa_balancing")[()] == 0
    assert samples(metrics, "numad_processes")[()] == 42
    assert samples(metrics, "numad_snapshot_timestamp_seconds")[()] == 1700000000.5


def test_no_scan_yet_and_unknown_balancing_export_nothing(sysfs):
    m = Metrics(sys_root=sysfs, state_provider=lambda: {"numa_balancing": None})
    assert samples(m, "numad_numa_balancing") == {}
    assert samples(m, "numad_rule_processes") == {}
    m = Metrics(sys_root=sysfs, state_provider=lambda: None)
    assert samples(m, "numad_snapshot_timestamp_seconds") == {}


def test_broken_sources_do_not_fail_the_scrape(tmp_path):
    def boom():
        raise RuntimeError("provider bug")

    m = Metrics(sys_root=tmp_path / "nothing-here", state_provider=boom)
    m.record_scan(0.1)
    errors = samples(m, "numad_collector_errors_total")   # one scrape: each source failed once
    assert errors == {(("source", "topology"),): 1, (("source", "state"),): 1}
    assert samples(m, "numad_scans_total")[()] == 1     # the rest of the scrape is intact
    assert samples(m, "numad_node_memory_total_bytes") == {}


def test_optional_sources_off():
    m = Metrics(sys_root=None)
    names = set(families(m))
    assert "numad_node_memory_total_bytes" not in names
    assert "numad_rule_resident_bytes" not in names
    assert "numad_scans" in names


def test_two_instances_do_not_collide():
    a, b = Metrics(sys_root=None), Metrics(sys_root=None)
    a.record_scan(1.0)
    assert samples(a, "numad_scans_total")[()] == 1
    assert samples(b, "numad_scans_total")[()] == 0


def test_collector_describe_does_not_call_providers(sysfs):
    called = []
    NumadCollector(sys_root=sysfs, state_provider=lambda: called.append(1) or {}).describe()
    Metrics(sys_root=sysfs, state_provider=lambda: called.append(1) or {})   # registering describes
    assert called == []


def test_naming_conventions_and_no_pid_label(metrics):
    for reason in REASONS:
        metrics.record_migration(result(), source="0", target="1", reason=reason)
    metrics.record_scan(0.1)
    metrics.record_reload(True, 1.0)
    metrics.record_request("migrate", "ok")
    fams = families(metrics)
    assert fams
    for fam in fams.values():
        if fam.name.endswith("_created"):   # client_python's creation-time gauges (off under the unit)
            continue
        assert fam.name.startswith("numad_"), fam.name
        if fam.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in fam.samples), fam.name
        if "bytes" in fam.name:
            assert fam.name.endswith("_bytes"), fam.name
        if "seconds" in fam.name:
            assert fam.name.endswith("_seconds"), fam.name
        for s in fam.samples:
            assert "pid" not in s.labels, (fam.name, s.labels)
            assert "node" not in s.labels or re.fullmatch(r"\d+", s.labels["node"]), s.labels
    text = metrics.exposition().decode()
    assert not re.search(r"[{,]pid=", text)


def _promtool() -> str | None:
    return shutil.which("promtool")


@pytest.mark.skipif(_promtool() is None and not ON_CI,
                    reason="promtool not installed (Debian package `prometheus`); CI installs it")
def test_promtool_check_metrics_is_clean(metrics):
    assert _promtool(), "promtool missing on CI: apt-get install prometheus"
    metrics.record_migration(result(), source="0,2", target="1", reason="request")
    metrics.record_scan(0.1)
    metrics.record_reload(True, 1700000000.0)
    metrics.record_request("migrate", "ok")
    text = metrics.exposition()
    proc = subprocess.run([_promtool(), "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), (
        proc.stdout.decode() + proc.stderr.decode())


def test_no_shim_fallbacks_family_is_claimed():
    # The shim counts its fallbacks per process (NUMAD_SHIM_STATS), nothing the daemon can read:
    # no metric may pretend otherwise.
    assert not any("shim" in name for name in families(Metrics(sys_root=None)))


def test_tick_errors_by_stage_start_at_zero_and_count():
    m = Metrics(sys_root=None)
    assert samples(m, "numad_tick_errors_total")[(("stage", "sense"),)] == 0
    m.record_tick_error("publish")
    m.record_tick_error("no-such-stage")
    assert samples(m, "numad_tick_errors_total")[(("stage", "publish"),)] == 1
    assert samples(m, "numad_tick_errors_total")[(("stage", "other"),)] == 1


def test_budget_waits_add_up_in_seconds(metrics):
    assert samples(metrics, "numad_budget_wait_seconds_total")[()] == 0     # exported from the start
    metrics.record_budget_wait(0.25)
    metrics.record_budget_wait(0.5)
    metrics.record_budget_wait(-1.0)                 # a clock step back adds nothing
    assert samples(metrics, "numad_budget_wait_seconds_total")[()] == 0.75
