"""deploy/kubernetes/ offline: every core object against the Kubernetes schemas
(kubernetes-validate's bundled copies, strict: unknown fields fail), the policy in the
ConfigMap through numad-py's own loader, and the pieces that must agree with each other."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
kv = pytest.importorskip("kubernetes_validate")

from numad_py.config import load_config  # noqa: E402

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
KUBERNETES_VERSIONS = ["1.28.0", "1.30.0"]
CORE_KINDS = {"Namespace", "ServiceAccount", "ConfigMap", "DaemonSet"}


def documents() -> list[dict]:
    return [doc for path in sorted(DEPLOY.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(kind: str) -> dict:
    (doc,) = [d for d in documents() if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_objects_pass_the_kubernetes_schemas(version):
    checked = set()
    for doc in documents():
        if doc["kind"] in CORE_KINDS:
            kv.validate(doc, version, strict=True)
            checked.add(doc["kind"])
    assert checked == CORE_KINDS


def test_a_broken_manifest_is_caught():
    ds = by_kind("DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilitys"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(ds, KUBERNETES_VERSIONS[-1], strict=True)


def test_daemonset_is_least_privilege():
    pod = by_kind("DaemonSet")["spec"]["template"]["spec"]
    assert pod["hostPID"] is True and not pod.get("hostNetwork")
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SYS_NICE", "SYS_PTRACE"]}
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and not sc["privileged"]
    assert c["resources"]["limits"]["memory"] and c["livenessProbe"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert all("subPath" not in m for m in mounts.values())  # subPath would never see updates


def test_configmap_policy_loads_with_numad_py(tmp_path):
    cm = by_kind("ConfigMap")
    pod = by_kind("DaemonSet")["spec"]["template"]["spec"]
    (policy,) = [v for v in pod["volumes"] if v["name"] == "policy"]
    for item in policy["configMap"]["items"]:
        target = tmp_path / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(cm["data"][item["key"]])
    config = load_config(tmp_path / "numad-py.toml", online_nodes=None)
    assert [r.name for r in config.rules]
    assert config.metrics.listen.endswith(":9816")


def test_podmonitor_scrapes_the_daemonset_port():
    pm = by_kind("PodMonitor")
    ds = by_kind("DaemonSet")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"] for p in ds["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {e["port"] for e in pm["spec"]["podMetricsEndpoints"]} <= ports
    assert pm["metadata"]["namespace"] == ds["metadata"]["namespace"]
