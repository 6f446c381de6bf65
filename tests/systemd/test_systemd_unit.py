"""systemd/numad-py.service: `systemd-analyze verify` clean, offline security exposure <= 2.0, and the
settings the daemon relies on (notify, watchdog, reload by signal, two capabilities, NUMA syscalls
allowed by the filter)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "numad-py.service"
ON_CI = os.environ.get("CI") == "true"
MAX_EXPOSURE = 2.0
NUMA_SYSCALLS = ("move_pages", "migrate_pages", "mbind", "set_mempolicy", "get_mempolicy",
                 "set_mempolicy_home_node", "sched_setaffinity", "sched_getaffinity")

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None and not ON_CI,
    reason="systemd-analyze not installed (Debian package `systemd`); CI must have it")


def settings(path: Path = UNIT) -> dict[str, list[str]]:
    """Key -> every value it is given, in order (systemd keys may repeat)."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def one(key: str) -> str:
    values = settings()[key]
    assert len(values) == 1, (key, values)
    return values[0]


def analyzable_copy(tmp_path: Path) -> Path:
    """The unit, with ExecStart's binary swapped for one that exists here (verify checks it)."""
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/numad-py run --config /etc/numad-py/numad-py.toml" in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("ExecStart=/usr/local/bin/numad-py ", f"ExecStart={shutil.which('true')} "))
    return copy


def analyze(*args: str) -> subprocess.CompletedProcess:
    assert ANALYZE, "systemd-analyze missing on CI: apt-get install systemd"
    env = dict(os.environ, SYSTEMD_COLORS="0", SYSTEMD_PAGER="", LC_ALL="C.UTF-8")
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=120, env=env)


@needs_analyze
def test_verify_is_clean(tmp_path):
    proc = analyze("verify", str(analyzable_copy(tmp_path)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stdout + proc.stderr


@needs_analyze
def test_verify_flags_only_the_missing_binary():
    # Unmodified, the only complaint on a machine without the installed script is ExecStart's path.
    if Path("/usr/local/bin/numad-py").exists():
        pytest.skip("numad-py is installed here")
    proc = analyze("verify", str(UNIT))
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert complaints and all("/usr/local/bin/numad-py" in line for line in complaints), complaints


@needs_analyze
def test_security_exposure_at_most_2(tmp_path):
    proc = analyze("security", "--offline=true", str(analyzable_copy(tmp_path)))
    text = proc.stdout + proc.stderr
    m = re.search(r"Overall exposure level for numad-py\.service: (\d+\.\d+)", text)
    assert m, text
    assert float(m.group(1)) <= MAX_EXPOSURE, text


def _expand(names: list[str], cache: dict[str, set[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        if not name.startswith("@"):
            out.add(name)
            continue
        if name not in cache:
            proc = analyze("syscall-filter", name)
            assert proc.returncode == 0, proc.stderr
            members = [ln.strip() for ln in proc.stdout.splitlines()[1:]
                       if ln.startswith("    ") and not ln.strip().startswith("#")]
            cache[name] = set()
            cache[name] = _expand(members, cache)
        out |= cache[name]
    return out


@needs_analyze
def test_syscall_filter_keeps_the_numa_calls():
    # Lines are applied in order: the first allow line starts an allow list, later allow lines add,
    # "~" lines remove.  The NUMA calls must survive all of it.
    cache: dict[str, set[str]] = {}
    allowed: set[str] | None = None
    for value in settings()["SystemCallFilter"]:
        deny = value.startswith("~")
        names = _expand(value.lstrip("~").split(), cache)
        if deny:
            if allowed is not None:
                allowed -= names
        else:
            allowed = names if allowed is None else allowed | names
    assert allowed, "no allow list"
    missing = [s for s in NUMA_SYSCALLS if s not in allowed]
    assert not missing, f"SystemCallFilter removes {missing}"
    for denied in ("ptrace", "process_vm_writev", "init_module", "reboot", "mount"):
        assert denied not in allowed, denied


def test_service_basics():
    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert one("ExecStart") == "/usr/local/bin/numad-py run --config /etc/numad-py/numad-py.toml"
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("Restart") == "on-failure"
    assert re.fullmatch(r"\d+s", one("WatchdogSec"))
    assert one("RuntimeDirectory") == "numad-py"
    assert one("StateDirectory") == "numad-py"
    assert one("ConfigurationDirectory") == "numad-py"
    assert one("UMask") == "0077"
    assert one("MemoryMax") and one("TasksMax")


def test_least_privilege():
    caps = {"CAP_SYS_NICE", "CAP_SYS_PTRACE"}
    assert set(one("CapabilityBoundingSet").split()) == caps
    assert set(one("AmbientCapabilities").split()) == caps
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
                "ProtectHostname", "LockPersonality", "MemoryDenyWriteExecute", "RestrictNamespaces",
                "RestrictRealtime", "RestrictSUIDSGID"):
        assert one(key) == "yes", key
    assert one("ProtectSystem") == "strict"
    assert one("SystemCallArchitectures") == "native"
    assert set(one("RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    # The daemon must see and read every process: no hidepid, no subset=pid (it reads /proc/sys too).
    assert settings().get("ProtectProc", ["default"]) == ["default"]
    assert settings().get("ProcSubset", ["all"]) == ["all"]
    # Capabilities against other users' processes only work in the host's user namespace.
    assert settings().get("PrivateUsers", ["no"]) == ["no"]
