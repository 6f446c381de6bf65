"""The shim system-wide (issue 17): the line in the guest's real /etc/ld.so.preload.

Runs inside the VM, where /etc is an overlay (writes vanish at shutdown; the
line is removed in a ``finally`` anyway).  No process here gets LD_PRELOAD:
ld.so loads the shim from /etc/ld.so.preload into every dynamically linked
program.  The rules file lives in the test's tmp dir (NUMAD_SHIM_RULES, which
the churn's programs inherit; setuid ones ignore it and are untouched).
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "shim"))

from shim_helpers import build_c

from numad_py import procfs
from numad_py.shim import LIBRARY_NAME, publish_shim_rules, shim_path

pytestmark = [
    pytest.mark.kernel_independent,
    pytest.mark.numa,
    pytest.mark.skipif(not os.environ.get("NUMAD_VM_TOPOLOGY"), reason="needs the multi-node VM"),
    pytest.mark.skipif(os.geteuid() != 0, reason="edits /etc/ld.so.preload"),
]

PRELOAD = Path("/etc/ld.so.preload")
TARGET = 1
CHURN = 1000
WORKERS = 2            # two drivers at once, like services starting together at boot

# The matched/unmatched probe: forks one child that reports its memory policy and
# where 32 of its fresh pages landed; exit 0 when that is what argv[1] expects.
PROBE_C = r"""
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#define MPOL_F_NODE 1
#define MPOL_F_ADDR 2
int main(int argc, char **argv) {
    int want_node = argc > 1 ? atoi(argv[1]) : -1;      /* -1: expect the default policy */
    pid_t p = fork();
    if (p < 0) return 10;
    if (p == 0) {
        int mode = -1; unsigned long mask[16] = {0};
        if (syscall(SYS_get_mempolicy, &mode, mask, 1025, 0, 0)) _exit(11);
        if (want_node < 0) _exit(mode == 0 ? 0 : 12);
        if (mode != 1 || mask[0] != 1UL << want_node) _exit(13);
        size_t size = 32 * 4096;
        char *buf = malloc(size);
        memset(buf, 1, size);
        for (size_t off = 0; off < size; off += 4096) {
            int node = -1;
            if (syscall(SYS_get_mempolicy, &node, NULL, 0, buf + off, MPOL_F_NODE | MPOL_F_ADDR)) _exit(14);
            if (node != want_node) _exit(15);
        }
        _exit(0);
    }
    int st;
    if (waitpid(p, &st, 0) != p || !WIFEXITED(st)) return 16;
    return WEXITSTATUS(st);
}
"""

# fork+exec each line of a command file (tab-separated argv) round-robin, COUNT times;
# prints one "fail I STATUS ARGV0" line per failure, then "done N".
DRIVER_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    FILE *f = fopen(argv[1], "r");
    if (!f) return 2;
    static char *cmds[64][16]; int n = 0; char line[1024];
    while (n < 64 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        int k = 0;
        for (char *t = strtok(strdup(line), "\t"); t && k < 15; t = strtok(NULL, "\t")) cmds[n][k++] = t;
        cmds[n][k] = NULL;
        if (k) n++;
    }
    int count = atoi(argv[2]), fails = 0;
    for (int i = 0; i < count; i++) {
        char **c = cmds[i % n];
        pid_t p = fork();
        if (p < 0) { printf("fail %d fork %s\n", i, c[0]); fails++; continue; }
        if (p == 0) {
            int dn = open("/dev/null", O_RDWR);
            dup2(dn, 0); dup2(dn, 1); dup2(dn, 2);
            execv(c[0], c);
            _exit(127);
        }
        int st;
        waitpid(p, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) { printf("fail %d %d %s\n", i, st, c[0]); fails++; }
    }
    printf("done %d\n", count);
    return fails != 0;
}
"""


def which(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return os.path.realpath(found) if name != "sh" else found
    return None


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "numad_py.cli", *args], capture_output=True, text=True,
                          timeout=300)


def maps_of_new(argv: list[str], env: dict) -> str:
    """The maps of a process started now, once it sleeps (ld.so is done with it by then)."""
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if procfs.parse_stat(procfs.read_text(proc.pid, "stat"))["state"] == "S":
                return procfs.read_text(proc.pid, "maps")
            time.sleep(0.05)
        raise AssertionError(f"{argv} did not reach its sleep")
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def open_lib():
    """The built shim copied where every user can reach it: install-system refuses a library
    under a directory others cannot search, and a checkout under /root is one."""
    d = Path(tempfile.mkdtemp(prefix="numad-system-lib-", dir="/tmp"))
    d.chmod(0o755)
    copy = d / LIBRARY_NAME
    shutil.copy(shim_path(), copy)
    copy.chmod(0o644)
    yield str(copy)
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.topology("two")
@pytest.mark.kernel(">=6.1")
def test_system_wide_line_churn_placement_and_removal(tmp_path, open_lib):
    lib = open_lib
    before = PRELOAD.read_bytes() if PRELOAD.exists() else None
    assert before is None or lib.encode() not in before, "a numad-py shim line is already installed"

    probe = build_c(tmp_path, "probe", PROBE_C)
    placed, unplaced = tmp_path / "numad-placed", tmp_path / "numad-other"
    shutil.copy(probe, placed)
    shutil.copy(probe, unplaced)
    driver = build_c(tmp_path, "churn", DRIVER_C)
    rules = tmp_path / "shim-rules"
    assert publish_shim_rules(rules, [_rule("placed", "numad-placed", str(TARGET))]) == 1

    sh, busybox = which("sh"), which("busybox")
    su = which("su")
    nobody = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    commands = [
        ["/bin/true"], [sh, "-c", "true; echo x >/dev/null"], [which("ls"), "/"],
        [which("cat"), "/etc/passwd"], [which("env")],
        [str(placed), str(TARGET)], [str(unplaced)],                   # expect the rule's node / default
    ]
    if su:
        commands.append([su, "--help"])                                 # setuid, run by root
        if Path(nobody[0]).exists() and Path("/usr/bin/passwd").exists():
            commands.append([*nobody, "/usr/bin/passwd", "--help"])     # setuid as nobody: AT_SECURE
    if busybox:
        commands.append([busybox, "true"])                              # statically linked
    assert all(c[0] for c in commands)
    table = tmp_path / "commands"
    table.write_text("".join("\t".join(c) + "\n" for c in commands))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMAD_SHIM_", "LD_PRELOAD"))}
    env["NUMAD_SHIM_RULES"] = str(rules)

    try:
        r = cli("shim", "install-system", "--library", lib)
        assert r.returncode == 0, r.stderr
        assert lib.encode() in PRELOAD.read_bytes()

        # the line is live: a new dynamic process maps the shim, a static one does not
        assert lib in maps_of_new(["sleep", "30"], env)
        if busybox:
            assert LIBRARY_NAME not in maps_of_new([busybox, "sleep", "30"], env)

        t0 = time.monotonic()
        drivers = [subprocess.Popen([str(driver), str(table), str(CHURN // WORKERS)], env=env,
                                    stdout=subprocess.PIPE, text=True) for _ in range(WORKERS)]
        outs = [(d.communicate(timeout=1800)[0], d.returncode) for d in drivers]
        print(f"churn: {CHURN} fork+exec of {len(commands)} programs in {time.monotonic() - t0:.1f} s")
        for out, rc in outs:
            assert rc == 0 and f"done {CHURN // WORKERS}" in out, out[-3000:]
    finally:
        r = cli("shim", "uninstall-system")
        after = PRELOAD.read_bytes() if PRELOAD.exists() else None
        if after is not None and lib.encode() in after:        # the CLI failed: put the file back by hand
            PRELOAD.write_bytes(before) if before is not None else PRELOAD.unlink()
    assert r.returncode == 0, r.stderr
    assert after == before                                      # the machine as it was
    assert LIBRARY_NAME not in maps_of_new(["sleep", "30"], env)


def _rule(name: str, comm: str, nodes: str):
    from numad_py.config.models import Rule
    return Rule.model_validate({"name": name, "match": {"comm": comm}, "spread_children": nodes})
