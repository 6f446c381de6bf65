"""The shim in hostile hands (issue 18 item 1): AT_SECURE programs and planted stats paths.

A setuid/setgid program is started with AT_SECURE=1: its environment was set
by someone with fewer privileges, so the shim must ignore every NUMAD_SHIM_*
variable (above all NUMAD_SHIM_STATS, a file it would create or rewrite with
the program's privileges).  ld.so does not preload into such programs, but
/etc/ld.so.preload does; here the probe dlopen()s the shim itself, which runs
the same constructor in the same AT_SECURE process without touching the host's
ld.so.preload.

In an ordinary program the stats file is used only if it is a regular file
of the caller, in a directory others cannot plant names in, and never
through a symlink.
"""

from __future__ import annotations

import grp
import json
import os
from pathlib import Path
import pwd
import shutil
import subprocess
import tempfile

import pytest

from numad_py.shim import STATS_MAGIC, STATS_SIZE, read_stats, shim_path

PROBE_C = r"""
#include <dlfcn.h>
#include <stdio.h>
#include <sys/auxv.h>
#include <unistd.h>
/* probe SHIM: load the shim as /etc/ld.so.preload would, report what it decided */
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) { fprintf(stderr, "%s\n", dlerror()); return 2; }
    int (*state)(void) = (int (*)(void))dlsym(h, "numad_shim_state");
    int (*rule)(char *, int) = (int (*)(char *, int))dlsym(h, "numad_shim_rule");
    printf("{\"at_secure\": %lu, \"euid\": %d, \"uid\": %d, \"state\": %d, \"rule\": %d}\n",
           getauxval(AT_SECURE), (int)geteuid(), (int)getuid(), state(), rule(NULL, 0));
    return 0;
}
"""

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="setuid/setgid probes need root to set up")


@pytest.fixture
def world():
    """A directory every user can traverse (pytest's tmp dirs are 0700), with the
    shim and the probe copied in so that nobody can run them."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler")
    d = Path(tempfile.mkdtemp(prefix="numad-shim-secure-", dir="/tmp"))
    try:
        d.chmod(0o755)
        shutil.copy(shim_path(), d / "libnumad_shim.so")
        (d / "probe.c").write_text(PROBE_C)
        subprocess.run([gcc, "-O2", "-o", str(d / "probe"), str(d / "probe.c"), "-ldl"], check=True,
                       capture_output=True)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def probe(world: Path, env: dict, wrap: tuple[str, ...] = (), exe: Path | None = None) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NUMAD_SHIM_", "LD_"))}
    out = subprocess.run([*wrap, str(exe or world / "probe"), str(world / "libnumad_shim.so")],
                         env={**clean, **env}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def hostile_env(target: Path, world: Path) -> dict:
    return {"NUMAD_SHIM_STATS": str(target), "NUMAD_SHIM_STRATEGY": "fixed", "NUMAD_SHIM_NODES": "0",
            "NUMAD_SHIM_RULES": str(world / "rules"), "NUMAD_SHIM_SYSFS": str(world)}


@needs_root
def test_setuid_root_run_by_nobody_ignores_the_environment(world):
    """The issue's case: nobody runs a setuid-root program with NUMAD_SHIM_STATS aimed at
    a root-only directory and at a root-only file."""
    secret = world / "root-only"
    secret.mkdir(mode=0o700)
    victim = secret / "victim"
    victim.write_bytes(b"root's data\n")
    victim.chmod(0o600)
    suid = world / "probe-suid"
    shutil.copy(world / "probe", suid)
    suid.chmod(0o4755)                                      # owned by root
    nobody = pwd.getpwnam("nobody")
    as_nobody = ("setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups")
    if shutil.which("setpriv") is None:
        pytest.skip("no setpriv")
    records = [probe(world, hostile_env(target, world), wrap=as_nobody, exe=suid)
               for target in (secret / "created", victim)]
    if any(rec["at_secure"] != 1 or rec["euid"] != 0 for rec in records):
        pytest.skip(f"setuid bit not honoured here (nosuid mount?): {records}")
    assert not (secret / "created").exists()
    assert victim.read_bytes() == b"root's data\n"
    for rec in records:
        assert rec["uid"] == nobody.pw_uid
        assert rec["rule"] != -5 and rec["state"] != 1, rec  # NUMAD_SHIM_STRATEGY was not used


@needs_root
def test_setgid_program_ignores_the_environment(world):
    """Root running a program setgid to another group is AT_SECURE too (egid != gid)."""
    sgid = world / "probe-sgid"
    shutil.copy(world / "probe", sgid)
    os.chown(sgid, 0, grp.getgrnam("nogroup").gr_gid)
    sgid.chmod(0o2755)
    target = world / "created-by-sgid"
    rec = probe(world, hostile_env(target, world), exe=sgid)
    if rec["at_secure"] != 1:
        pytest.skip(f"setgid bit not honoured here: {rec}")
    assert not target.exists()
    assert rec["rule"] != -5 and rec["state"] != 1, rec
    # the same program without the setgid bit does use the environment: the probe sees it
    plain = probe(world, hostile_env(target, world))
    assert plain["at_secure"] == 0 and plain["rule"] == -5, plain
    assert target.exists() and target.read_bytes()[:8] == STATS_MAGIC


def test_fresh_stats_file_in_a_trusted_directory(world, tmp_path):
    target = tmp_path / "stats"
    probe(world, {"NUMAD_SHIM_STATS": str(target), "NUMAD_SHIM_STRATEGY": "spread", "NUMAD_SHIM_NODES": "0"})
    assert target.stat().st_size == STATS_SIZE and target.read_bytes()[:8] == STATS_MAGIC
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert read_stats(target)["calls"] == 0


def test_symlinked_stats_path_is_not_followed(world, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"mine\n")
    link = tmp_path / "stats"
    link.symlink_to(victim)
    dangling = tmp_path / "stats2"
    dangling.symlink_to(tmp_path / "would-be-created")
    for path in (link, dangling):
        probe(world, {"NUMAD_SHIM_STATS": str(path), "NUMAD_SHIM_STRATEGY": "spread", "NUMAD_SHIM_NODES": "0"})
    assert victim.read_bytes() == b"mine\n"
    assert not (tmp_path / "would-be-created").exists() and link.is_symlink()


def test_hard_link_and_foreign_files_are_left_alone(world, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"x" * STATS_SIZE)          # right size, wrong magic
    hard = tmp_path / "hard"
    os.link(victim, hard)
    other = tmp_path / "other-size"
    other.write_bytes(b"y" * 10)
    for path in (hard, victim, other):
        probe(world, {"NUMAD_SHIM_STATS": str(path), "NUMAD_SHIM_STRATEGY": "spread", "NUMAD_SHIM_NODES": "0"})
    assert victim.read_bytes() == b"x" * STATS_SIZE and other.read_bytes() == b"y" * 10


@needs_root
def test_directory_or_file_of_another_user_is_not_trusted(world):
    """Root told to write into a directory nobody owns (where nobody could swap names), or
    into a file nobody planted in a sticky directory, writes nothing."""
    nobody = pwd.getpwnam("nobody")
    planted_dir = world / "nobodys"
    planted_dir.mkdir(mode=0o755)
    os.chown(planted_dir, nobody.pw_uid, nobody.pw_gid)
    sticky = world / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    planted = sticky / "stats"
    planted.write_bytes(b"")
    os.chown(planted, nobody.pw_uid, nobody.pw_gid)
    env = {"NUMAD_SHIM_STRATEGY": "spread", "NUMAD_SHIM_NODES": "0"}
    probe(world, {**env, "NUMAD_SHIM_STATS": str(planted_dir / "stats")})
    probe(world, {**env, "NUMAD_SHIM_STATS": str(planted)})
    assert not (planted_dir / "stats").exists()
    assert planted.stat().st_size == 0
    probe(world, {**env, "NUMAD_SHIM_STATS": str(sticky / "mine")})    # sticky: own new file is fine
    assert (sticky / "mine").stat().st_size == STATS_SIZE
    # nobody's symlink in the sticky dir, pointing at a root-owned directory
    root_dir = world / "roots"
    root_dir.mkdir(mode=0o755)
    link = sticky / "linkdir"
    link.symlink_to(root_dir)
    os.lchown(link, nobody.pw_uid, nobody.pw_gid)
    probe(world, {**env, "NUMAD_SHIM_STATS": str(link / "stats")})
    assert not (root_dir / "stats").exists()
    own_link = world / "own-link"                                     # root's own symlink: followed
    own_link.symlink_to(root_dir)
    probe(world, {**env, "NUMAD_SHIM_STATS": str(own_link / "stats")})
    assert (root_dir / "stats").stat().st_size == STATS_SIZE
