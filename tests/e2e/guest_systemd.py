"""End-to-end check of systemd/numad-py.service under a real systemd (PID 1).

Runs INSIDE the two-node guest booted by run_systemd_vm.py, started by
guest_boot.sh (after it mounted the rwdir and the /etc, /var overlays).
Stdlib only.  Writes into OUT (the --rwdir shared with the host):

    result.json   {"checks": [{"name", "ok", "detail", "seconds"}], "ok": bool, ...}
    result.xml    the same as junit XML (one testcase per check)
    journal.txt   journalctl -u numad-py
    rc            0 if every check passed, else 1

The unit installed is the repo's systemd/numad-py.service, unchanged, plus a
drop-in with only what this VM needs (see DROPIN).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PYTHON = Path(sys.executable)  # the repo's venv interpreter (absolute path)
NUMAD = PYTHON.with_name("numad-py")
WORKLOAD = REPO / "tests" / "numa" / "workload.py"
UNIT_SRC = REPO / "systemd" / "numad-py.service"
UNIT = "numad-py.service"
ETC = Path("/etc/numad-py")
STATE_DIR = Path("/var/lib/numad-py")
METRICS = "http://127.0.0.1:9816/metrics"
SEED = 4242
MIB = 32

# Only what differs in this VM from a real install:
# * ExecStart: the repo's venv instead of /usr/local/bin (install.sh's symlink);
# * ProtectHome=tmpfs + BindReadOnlyPaths: the venv's interpreter lives under
#   /root/.pyenv on the host; ProtectHome=yes would hide it (a real install
#   under /opt/numad-py does not need this);
# * BindReadOnlyPaths={REPO}: the checkout may sit under /tmp (hidden by the
#   unit's PrivateTmp) or /root (hidden by ProtectHome);
# * TimeoutStartSec: interpreter start-up under TCG emulation is slow.
DROPIN = f"""[Service]
ExecStart=
ExecStart={NUMAD} run --config /etc/numad-py/numad-py.toml
ProtectHome=tmpfs
BindReadOnlyPaths={os.path.realpath(PYTHON).rsplit('/bin/', 1)[0]}
BindReadOnlyPaths={REPO}
TimeoutStartSec=300s
"""

CONFIG = """[daemon]
scan_interval = "1s"
cooldown = "1s"
[metrics]
listen = "127.0.0.1:9816"
[control]
socket = "/run/numad-py/control.sock"
"""
# `every`: a rule acts once at first sight by default, and a workload started
# while the daemon runs is first seen during its interpreter's start-up, before
# its MIB exist (seen under TCG: "migrate pid=.. status=done pages=0"), after
# which `once` is spent.  Re-enforcing every few seconds moves it once filled.
RULE = f"""[[rule]]
name = "e2e"
match.cmdline = "workload.py.*--seed {SEED}"
nodes = "1"
every = "3s"
"""
BROKEN = """[[rule]]
name = "broken"
match.comm = "nothing"
nodes = "7"
"""


class Checks:
    def __init__(self, out: Path):
        self.out = out
        self.items: list[dict] = []
        self.t0 = time.monotonic()

    def run(self, name: str, fn) -> bool:
        t = time.monotonic()
        try:
            detail = fn()
            ok = True
        except Exception as exc:  # a failed check records why and the run goes on
            ok = False
            detail = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, AssertionError):
                detail += "\n" + traceback.format_exc()
        item = {"name": name, "ok": ok, "detail": str(detail or ""), "seconds": round(time.monotonic() - t, 1)}
        self.items.append(item)
        print(f"[{'PASS' if ok else 'FAIL'}] {name} ({item['seconds']}s): {item['detail']}", flush=True)
        return ok

    def write(self, extra: dict) -> int:
        ok = bool(self.items) and all(i["ok"] for i in self.items)
        result = {"ok": ok, "seconds": round(time.monotonic() - self.t0, 1), "checks": self.items, **extra}
        (self.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        suite = ET.Element("testsuite", name="systemd-e2e", tests=str(len(self.items)),
                           failures=str(sum(not i["ok"] for i in self.items)), time=str(result["seconds"]))
        for i in self.items:
            case = ET.SubElement(suite, "testcase", classname="systemd_e2e", name=i["name"], time=str(i["seconds"]))
            if not i["ok"]:
                ET.SubElement(case, "failure", message=i["detail"].splitlines()[0] if i["detail"] else "")
            else:
                ET.SubElement(case, "system-out").text = i["detail"]
        ET.ElementTree(suite).write(self.out / "result.xml", encoding="unicode")
        rc = 0 if ok else 1
        (self.out / "rc").write_text(f"{rc}\n")
        return rc


# --- helpers ---------------------------------------------------------------

def sh(*argv: str, check: bool = True, timeout: float = 120) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stdout}{proc.stderr}")
    return proc.stdout


def show(*props: str) -> dict[str, str]:
    text = sh("systemctl", "show", UNIT, "-p", ",".join(props))
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def journal() -> str:
    return sh("journalctl", "-u", UNIT, "--no-pager", "-o", "short-monotonic", check=False)


def wait_for(what: str, fn, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def node_share(pid: int, start: int, node: int) -> float:
    for line in Path(f"/proc/{pid}/numa_maps").read_text().splitlines():
        addr, _, rest = line.partition(" ")
        if int(addr, 16) != start:
            continue
        pages: dict[int, int] = {}
        for f in rest.split():
            m = re.fullmatch(r"N(\d+)=(\d+)", f)
            if m:
                pages[int(m.group(1))] = int(m.group(2))
        total = sum(pages.values())
        return pages.get(node, 0) / total if total else 0.0
    raise LookupError(f"no mapping at {start:#x} in /proc/{pid}/numa_maps")


class Workload:
    def __init__(self, seed: int):
        self.proc = subprocess.Popen(
            [str(PYTHON), str(WORKLOAD), "--mib", str(MIB), "--policy", "preferred", "--node", "0",
             "--seed", str(seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self.proc.stdout.readline())
        self.pid = self.info["pid"]
        self.start = self.info["regions"]["anon"]["start"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("exit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()


def metrics() -> str:
    with urllib.request.urlopen(METRICS, timeout=10) as resp:
        return resp.read().decode()


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


# --- the checks ------------------------------------------------------------

def main() -> int:
    out = Path(sys.argv[1])
    checks = Checks(out)
    state: dict = {}
    extra: dict = {"kernel": os.uname().release}
    workloads: list[Workload] = []

    def setup():
        # journald is not pulled in when systemd.unit= names our service: start it.
        sh("systemctl", "start", "systemd-journald.socket", "systemd-journald.service", check=False)
        (ETC / "rules.d").mkdir(parents=True, exist_ok=True)
        # /etc is an overlay of the host's: a host that ran `make run` has the
        # shipped rules there, and the test must count only its own.
        for stale in (ETC / "rules.d").glob("*"):
            stale.unlink()
        # Likewise its /var/lib/numad-py (history.json, written by `make run` as
        # root): DynamicUser= would move it to /var/lib/private, a rename the
        # overlay refuses (EXDEV: "Failed at step STATE_DIRECTORY").
        shutil.rmtree(STATE_DIR, ignore_errors=True)
        (ETC / "numad-py.toml").write_text(CONFIG)
        (ETC / "rules.d" / "10-e2e.toml").write_text(RULE)
        for p in [ETC, ETC / "rules.d", *ETC.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        # The guest's first full import (pydantic) under TCG: 18 s alone, over 120 s on a
        # loaded host.  Not a timing check, so the bound only catches a hang.
        sh(str(NUMAD), "check-config", str(ETC / "numad-py.toml"), timeout=330)
        shutil.copy(UNIT_SRC, "/etc/systemd/system/numad-py.service")
        dropin = Path("/etc/systemd/system/numad-py.service.d")
        dropin.mkdir(parents=True, exist_ok=True)
        (dropin / "e2e-vm.conf").write_text(DROPIN)
        sh("systemctl", "daemon-reload")
        return sh("systemd-analyze", "verify", UNIT, check=False).strip() or "unit installed, verify clean"

    def workload_on_node0():
        w = Workload(SEED)
        workloads.append(w)
        state["w1"] = w
        share = node_share(w.pid, w.start, 0)
        assert share > 0.99, f"workload started with only {share:.1%} on node 0"
        return f"pid {w.pid}, {MIB} MiB, {share:.1%} on node 0"

    def start_ready():
        t = time.monotonic()
        sh("systemctl", "start", UNIT, timeout=330)  # Type=notify: returns after READY=1
        extra["start_seconds"] = round(time.monotonic() - t, 1)
        p = show("ActiveState", "SubState", "StatusText", "Type", "MainPID", "NRestarts", "User")
        assert p["ActiveState"] == "active" and p["SubState"] == "running", p
        assert p["Type"] == "notify", p
        assert p["StatusText"], f"no STATUS= sent: {p}"
        state["pid"] = int(p["MainPID"])
        status = Path(f"/proc/{state['pid']}/status").read_text()
        uid = re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)
        capamb = re.search(r"^CapAmb:\s+(\w+)", status, re.M).group(1)
        assert uid != "0", "the daemon runs as root; DynamicUser=yes expected"
        # CAP_SYS_NICE = 23, CAP_SYS_PTRACE = 19
        assert int(capamb, 16) == (1 << 23) | (1 << 19), f"ambient caps {capamb}"
        return f"{p} uid={uid} CapAmb={capamb} (start took {extra['start_seconds']}s)"

    def moved():
        w = state["w1"]
        t = time.monotonic()
        share = wait_for("the workload on node 1", lambda: (s := node_share(w.pid, w.start, 1)) >= 0.99 and s,
                         timeout=120)
        extra["placed_seconds"] = round(time.monotonic() - t, 1)
        line = wait_for("the migrate log line",
                        lambda: re.search(rf"migrate pid={w.pid} .*status=done.*", journal()), timeout=30)
        return f"{share:.1%} on node 1 after {extra['placed_seconds']}s; journal: {line.group(0)}"

    def scraped():
        text = metrics()
        moved_bytes = metric_sum(text, "numad_migrated_bytes_total", to="1")
        assert moved_bytes >= MIB << 20, f"numad_migrated_bytes_total{{to=1}} = {moved_bytes}"
        assert metric_sum(text, "numad_scans_total") >= 1
        assert metric_sum(text, "numad_config_reloads_total", result="ok") >= 1
        return f"numad_migrated_bytes_total{{to=\"1\"}} = {moved_bytes:.0f}; {len(text.splitlines())} lines"

    def reload_broken():
        (ETC / "rules.d" / "20-broken.toml").write_text(BROKEN)
        os.chmod(ETC / "rules.d" / "20-broken.toml", 0o644)
        sh("systemctl", "reload", UNIT)
        line = wait_for("the reload error in the journal",
                        lambda: re.search(r"reload failed, keeping the previous 1 rule\(s\)", journal()), timeout=60)
        err = wait_for("the file:line error", lambda: re.search(r"20-broken\.toml:\d+: .*nodes.*", journal()),
                       timeout=10)
        p = show("ActiveState", "SubState", "MainPID", "NRestarts")
        assert p["ActiveState"] == "active" and int(p["MainPID"]) == state["pid"], p
        errors = wait_for("reloads_total{result=error}",
                          lambda: metric_sum(metrics(), "numad_config_reloads_total", result="error"), timeout=30)
        # The old rule still acts: a second matching workload is moved too.
        w2 = Workload(SEED)
        workloads.append(w2)
        wait_for("the second workload on node 1", lambda: node_share(w2.pid, w2.start, 1) >= 0.99, timeout=120)
        return f"{line.group(0)} / {err.group(0)}; still {p}; reload errors={errors:.0f}; old rule moved pid {w2.pid}"

    def stop_clean():
        t = time.monotonic()
        sh("systemctl", "stop", UNIT, timeout=60)
        extra["stop_seconds"] = round(time.monotonic() - t, 1)
        p = show("ActiveState", "SubState", "Result", "ExecMainStatus", "ExecMainCode")
        assert p["ActiveState"] == "inactive" and p["Result"] == "success", p
        assert p["ExecMainStatus"] == "0", p
        return f"{p} in {extra['stop_seconds']}s"

    steps = [("install unit and config", setup), ("workload starts on node 0", workload_on_node0),
             ("start reaches active via READY=1", start_ready), ("matching workload moved to node 1", moved),
             ("metrics scraped", scraped), ("reload with a broken rule keeps the old rules", reload_broken),
             ("stop is clean", stop_clean)]
    for name, fn in steps:
        if not checks.run(name, fn) and name in ("install unit and config", "start reaches active via READY=1"):
            break
    for w in workloads:
        w.close()
    (out / "journal.txt").write_text(journal())
    sh("systemctl", "stop", UNIT, check=False)
    return checks.write(extra)


if __name__ == "__main__":
    try:
        rc = main()
    except Exception:
        traceback.print_exc()
        rc = 1
        Path(sys.argv[1], "rc").write_text("1\n")
    sys.exit(rc)
