"""The gate (issue 17): an unmatched program decides without reading the rules text.

Host tests: a small C probe loads the shim the way /etc/ld.so.preload would
(LD_PRELOAD here, so the host's file is never touched) and prints what the
constructor decided (numad_shim_rule: -6 gated, -7 AT_SECURE); strace shows
which files it opened.
"""

from __future__ import annotations

import grp
import os
import re
from pathlib import Path
import shutil
import subprocess
import tempfile

import pytest

from numad_py.config.models import Rule
from numad_py.shim import RULES_HEADER, RULES_MAX_RULES, publish_shim_rules, shim_path
from numad_py.shim.gate import GATE_ENTRY, GATE_HEADER, GATE_MAX_ENTRIES, GATE_PASS_ALL, gate_path
from numad_py.topology import read_topology

from shim_helpers import build_c

NODE0 = str(min(read_topology().memory_nodes))
RULE_GATED, RULE_SECURE = -6, -7

PROBE_C = r"""
#include <dlfcn.h>
#include <stdio.h>
/* prints what the preloaded shim's constructor decided for this program */
int main(int argc, char **argv) {
    void *h = argc > 1 ? dlopen(argv[1], RTLD_NOW) : NULL;   /* preloaded: the same copy */
    if (!h) { puts("not loaded"); return 2; }
    int (*rule)(char *, int) = (int (*)(char *, int))dlsym(h, "numad_shim_rule");
    int (*state)(void) = (int (*)(void))dlsym(h, "numad_shim_state");
    printf("%d %d\n", rule(NULL, 0), state());
    return 0;
}
"""


def rule(**kw) -> Rule:
    return Rule.model_validate(kw)


@pytest.fixture
def probe(tmp_path):
    """build(name) -> a probe program whose comm is name; run(exe, rules) -> (rule, state)."""
    base = build_c(tmp_path, "probe", PROBE_C)

    def named(name: str) -> Path:
        exe = tmp_path / name
        if not exe.exists():
            shutil.copy(base, exe)
        return exe
    return named


def clean_env(rules: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMAD_SHIM_", "LD_"))}
    return {**env, "LD_PRELOAD": str(shim_path()), "NUMAD_SHIM_RULES": str(rules)}


def decided(exe: Path, rules: Path, wrap: tuple[str, ...] = ()) -> tuple[int, int]:
    out = subprocess.run([*wrap, str(exe), str(shim_path())], env=clean_env(rules), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    r, s = out.stdout.split()
    return int(r), int(s)


def test_unmatched_program_opens_only_the_gate(tmp_path, probe):
    rules = tmp_path / "shim-rules"
    assert publish_shim_rules(rules, [rule(name="db", match={"comm": "spreadme"}, spread_children=NODE0)]) == 1
    assert gate_path(rules).is_file()
    assert decided(probe("other"), rules) == (RULE_GATED, 0)
    assert decided(probe("spreadme"), rules) == (0, 1)            # the text still decides a match
    if shutil.which("strace") is None:
        pytest.skip("no strace")
    trace = tmp_path / "trace"
    subprocess.run(["strace", "-f", "-o", str(trace), "-e", "trace=openat,open", "/bin/true"],
                   env=clean_env(rules), check=True, timeout=60)
    opened = [line for line in trace.read_text().splitlines() if str(tmp_path) in line]
    assert len(opened) == 1 and str(gate_path(rules)) in opened[0], opened


def test_an_unmatched_program_binds_only_what_every_process_needs(tmp_path):
    """System-wide every process runs the constructor, and each libc function it calls is
    bound lazily at its first call (string functions run an IFUNC resolver too).  ld.so's
    log (LD_DEBUG=bindings) lists every binding the shim makes in an unmatched /bin/true:
    the five symbols resolved for signal handlers (dlsym), and no more than getauxval,
    dlsym and errno besides the two data symbols bound at load."""
    rules = tmp_path / "shim-rules"
    publish_shim_rules(rules, [rule(name="db", match={"comm": "spreadme"}, spread_children=NODE0)])
    out = subprocess.run(["/bin/true"], env={**clean_env(rules), "LD_DEBUG": "bindings"},
                         capture_output=True, text=True, check=True, timeout=60)
    bound = set(re.findall(rf"binding file {re.escape(str(shim_path()))} \[0\] to .*: normal symbol `([^']+)'",
                           out.stderr))
    assert bound == {"environ", "__cxa_finalize", "__errno_location", "getauxval", "dlsym",
                     "fork", "_Fork", "vfork", "execv", "execve"}, sorted(bound)


def test_a_gate_of_another_rules_file_is_ignored(tmp_path, probe):
    """A hand-written rules file (or a publish half done) with an old gate: the text decides."""
    rules = tmp_path / "shim-rules"
    publish_shim_rules(rules, [rule(name="a", match={"comm": "first"}, spread_children=NODE0)])
    stale = gate_path(rules).read_bytes()
    rules.write_text(f"{RULES_HEADER}\nrule\tb\tsecond\t\t-\tspread\t{NODE0}\tpreferred\t0\n")
    gate_path(rules).write_bytes(stale)
    assert decided(probe("second"), rules) == (0, 1)
    assert decided(probe("first"), rules) == (-3, 0)               # read the text: no line


def test_uid_exe_and_none_lines(tmp_path, probe):
    rules = tmp_path / "shim-rules"
    me = os.getuid()
    exe_here = probe("by-exe")
    publish_shim_rules(rules, [
        rule(name="stop", match={"comm": "stopped"}, nodes=NODE0),          # a "none" line
        rule(name="not-me", match={"comm": "by-uid", "user": me + 1}, spread_children=NODE0),
        rule(name="me", match={"comm": "mine", "user": me}, spread_children=NODE0),
        rule(name="exe", match={"exe": re.escape(f"{exe_here.parent}/by-e") + ".*"}, spread_children=NODE0),
    ])
    assert decided(probe("by-uid"), rules) == (RULE_GATED, 0)
    assert decided(probe("mine"), rules)[1] == 1
    assert decided(exe_here, rules)[1] == 1
    assert decided(probe("by-other"), rules) == (RULE_GATED, 0)
    assert decided(probe("stopped"), rules) == (RULE_GATED, 0)              # dormant either way


def test_a_glob_too_long_for_the_gate_makes_it_pass_everything(tmp_path, probe):
    rules = tmp_path / "shim-rules"
    long_exe = "/opt/" + "x" * 200
    publish_shim_rules(rules, [rule(name="long", match={"exe": long_exe}, spread_children=NODE0),
                               rule(name="short", match={"comm": "short"}, spread_children=NODE0)])
    header = GATE_HEADER.unpack_from(gate_path(rules).read_bytes())
    assert header[9] & GATE_PASS_ALL and header[4] == 1
    assert decided(probe("other"), rules) == (-3, 0)               # the text was read
    assert decided(probe("short"), rules)[1] == 1


def test_a_gate_longer_than_one_read(tmp_path, probe):
    """The constructor reads the gate a few entries at a time (to keep its
    stack shallow): a match in a later chunk still reads the text, and no
    match in any chunk still decides without it."""
    rules = tmp_path / "shim-rules"
    names = [f"prog{i:02d}" for i in range(10)]
    assert publish_shim_rules(rules, [*(rule(name=n, match={"comm": n}, spread_children=NODE0) for n in names),
                                      rule(name="glob", match={"comm": "work.*"}, spread_children=NODE0)]) == 11
    assert GATE_HEADER.unpack_from(gate_path(rules).read_bytes())[4] == 11
    assert decided(probe("worker"), rules) == (10, 1)                # the last chunk's last entry, a glob
    assert decided(probe("prog05"), rules) == (5, 1)                 # a plain name
    assert decided(probe("prog0"), rules) == (RULE_GATED, 0)         # a plain name is not a prefix
    assert decided(probe("nobody"), rules) == (RULE_GATED, 0)


def test_a_truncated_gate_lets_the_text_decide(tmp_path, probe):
    """A gate cut short of the entries its header counts proves nothing."""
    rules = tmp_path / "shim-rules"
    publish_shim_rules(rules, [rule(name=f"r{i}", match={"comm": f"prog{i}"}, spread_children=NODE0)
                               for i in range(6)])
    gate = gate_path(rules)
    gate.write_bytes(gate.read_bytes()[:GATE_HEADER.size + 5 * GATE_ENTRY.size + 100])
    assert decided(probe("nobody"), rules) == (-3, 0)                # the text was read: no line
    assert decided(probe("prog5"), rules) == (5, 1)


# Every interposed call, from a process the gate left dormant: the ones the
# constructor does not resolve there (posix_spawn*, system, popen, execvp*)
# are looked up at their first call and must behave as without the shim.
PASS_THROUGH_C = r"""
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
static int status_of(pid_t pid) { int st; return waitpid(pid, &st, 0) == pid && WIFEXITED(st) ? WEXITSTATUS(st) : -1; }
int main(void) {
    char *argv[] = {"sh", "-c", "exit 7", NULL};
    pid_t pid;
    int ok = 0;
    ok += posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ) == 0 && status_of(pid) == 7;
    ok += posix_spawnp(&pid, "sh", NULL, NULL, argv, environ) == 0 && status_of(pid) == 7;
    ok += WEXITSTATUS(system("exit 7")) == 7;
    FILE *f = popen("echo seven", "r");
    char line[16] = {0};
    ok += f && fgets(line, sizeof(line), f) && !strcmp(line, "seven\n") && pclose(f) == 0;
    if (!(pid = fork())) { execvp("sh", argv); _exit(1); }
    ok += status_of(pid) == 7;
    if (!(pid = fork())) { execvpe("sh", argv, environ); _exit(1); }
    ok += status_of(pid) == 7;
    if (!(pid = vfork())) { execv("/bin/sh", argv); _exit(1); }
    ok += status_of(pid) == 7;
    if (!(pid = fork())) { execve("/bin/sh", argv, environ); _exit(1); }
    ok += status_of(pid) == 7;
    printf("%d\n", ok);
    return 0;
}
"""


def test_a_dormant_process_passes_every_call_through(tmp_path):
    rules = tmp_path / "shim-rules"
    publish_shim_rules(rules, [rule(name="other", match={"comm": "someone-else"}, spread_children=NODE0)])
    exe = build_c(tmp_path, "passthrough", PASS_THROUGH_C)
    out = subprocess.run([str(exe)], env=clean_env(rules), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "cannot be preloaded" not in out.stderr, out.stderr
    assert out.stdout.split() == ["8"]


def test_gate_layout_matches_the_header():
    text = (Path(__file__).resolve().parents[2] / "cext" / "preload" / "numad_shim.h").read_text()
    assert GATE_HEADER.size == 64 and GATE_ENTRY.size == 256 and GATE_MAX_ENTRIES == RULES_MAX_RULES
    assert '"NUMADGT1"' in text and "_Static_assert(sizeof(struct numad_gate_entry) == 256" in text


@pytest.mark.skipif(os.geteuid() != 0, reason="a setgid probe needs root to set up")
def test_setgid_program_is_untouched():
    """AT_SECURE: the constructor reads nothing (ld.so ignores LD_PRELOAD here, so the
    probe dlopen()s the shim, which runs the same constructor)."""
    d = Path(tempfile.mkdtemp(prefix="numad-gate-", dir="/tmp"))
    try:
        d.chmod(0o755)
        exe = build_c(d, "sgidprobe", PROBE_C)
        rules = d / "shim-rules"
        publish_shim_rules(rules, [rule(name="it", match={"comm": "sgidprobe"}, spread_children=NODE0)])
        assert decided(exe, rules) == (0, 1)                # not secure: the rule places
        os.chown(exe, 0, grp.getgrnam("nogroup").gr_gid)
        exe.chmod(0o2755)
        r = decided(exe, rules)                             # root runs it: egid != gid
        if r == (0, 1):
            pytest.skip("setgid bit not honoured here (nosuid mount?)")
        assert r == (RULE_SECURE, 0)
    finally:
        shutil.rmtree(d, ignore_errors=True)
