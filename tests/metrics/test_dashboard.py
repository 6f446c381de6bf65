"""dashboards/numad-py.grafana.json must not drift from the metrics: every metric name and every
grouping label its queries use must exist in what a Metrics instance exposes after one migration."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from numad_py.metrics import Metrics
from numad_py.numa import MigrationResult

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "dashboards" / "numad-py.grafana.json"
TARGET_LABELS = {"instance", "job", "le"}   # added by Prometheus / histogram buckets
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",)}


def exposed(tmp_path) -> dict[str, set[str]]:
    """Every sample name a scrape can show -> its label names."""
    node = tmp_path / "sys/devices/system/node"
    (node / "node0").mkdir(parents=True)
    (node / "online").write_text("0\n")
    (node / "node0/cpulist").write_text("0-1\n")
    (node / "node0/meminfo").write_text("Node 0 MemTotal: 1024 kB\nNode 0 MemFree: 512 kB\n")
    (node / "node0/distance").write_text("10\n")
    state = {"time": 1.0, "numa_balancing": 0, "processes": 1,
             "rules": {"db": {"processes": 1, "resident_bytes": {0: 4096}},
                       "cold": {"processes": 1, "resident_bytes": {0: 4096}, "tier_bytes": {"fast": 1, "slow": 2}}}}
    m = Metrics(sys_root=tmp_path / "sys", state_provider=lambda: state)
    m.record_migration(MigrationResult(pid=1, target=frozenset({0}), moved=1, already=1, failed=Counter(busy=1),
                                       seconds=0.1, longest_call_seconds=0.01, calls=1),
                       source="1", target="0", reason="request")
    m.record_tier_move("cold", "slow", 4096)
    names: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for suffix in SUFFIXES.get(fam.type, ("",)):
            names.setdefault(fam.name + suffix, set())
        for s in fam.samples:
            names.setdefault(s.name, set()).update(s.labels)
    # Families with labels but no children yet (control requests) show no samples: their labels are
    # declared by the Metrics object.
    names["numad_control_requests_total"] |= {"op", "result"}
    return names


def queries(node) -> list[str]:
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                out.append(value)
            elif key == "query" and isinstance(value, str) and "numad_" in value:
                out.append(value)
            else:
                out += queries(value)
    elif isinstance(node, list):
        for item in node:
            out += queries(item)
    return out


def test_dashboard_is_valid_grafana_json():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] == "numad-py" and dash["uid"]
    titles = {p["title"] for p in dash["panels"]}
    for must in ("Free memory per node", "Migration rate by reason", "Failed pages by outcome",
                 "Per-call stall (heatmap)", "Scans per second", "Config reloads"):
        assert must in titles
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24


def test_every_metric_and_label_in_the_dashboard_exists(tmp_path):
    names = exposed(tmp_path)
    exprs = queries(json.loads(DASHBOARD.read_text()))
    assert len(exprs) > 10
    unknown_metrics, unknown_labels = [], []
    for expr in exprs:
        used = set(re.findall(r"\bnumad_[A-Za-z0-9_]+", expr))
        assert used, expr
        unknown_metrics += [(n, expr) for n in sorted(used) if n not in names]
        available = set(TARGET_LABELS).union(*(names.get(n, set()) for n in used))
        grouped = {label.strip() for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
                   for label in group.split(",") if label.strip()}
        matched = set(re.findall(r"[{,]\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", expr))
        unknown_labels += [(label, expr) for label in sorted(grouped | matched) if label not in available]
    assert not unknown_metrics, unknown_metrics
    assert not unknown_labels, unknown_labels
