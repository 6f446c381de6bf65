"""Host tests of the fork-time shim: formats, env, and real forks on a 1-node machine."""

from __future__ import annotations

import errno
import os
import platform
import subprocess
import time

import pytest

from numad_py import shim
from numad_py.shim import (
    NodeTableWriter, TableNode, build_env, decode_stats, decode_table, encode_table, publish_node_table,
    read_node_table, read_stats, shim_path,
)
from numad_py.topology import read_topology

from shim_helpers import (
    EXEC_FORMS_C, FORK_EXEC_C, PY, SECCOMP_C, VFORK_C, Running, build_c, named_program, run_workload, shim_env,
)

NODE0 = min(read_topology().memory_nodes)


# --- formats -------------------------------------------------------------------

def test_table_round_trip():
    nodes = {0: TableNode(10 << 30, 16 << 30, True, True), 3: TableNode(1 << 20, 2 << 20, True, False)}
    data = encode_table(nodes, generation=7, updated_ns=123, expires_ns=456)
    assert len(data) == 64 + 4 * 32
    t = decode_table(data)
    assert t.generation == 7 and t.updated_ns == 123 and t.expires_ns == 456 and t.nr_entries == 4
    assert t.nodes == nodes
    assert not t.superseded


@pytest.mark.parametrize("bad", [b"", b"X" * 64, encode_table({0: TableNode(1)}, generation=1, updated_ns=1)[:70]])
def test_table_rejects_garbage(bad):
    with pytest.raises(ValueError):
        decode_table(bad)


def test_publish_in_place_then_replace(tmp_path):
    path = tmp_path / "node-table"
    assert publish_node_table(path, {0: 100, 1: 200}, valid_for=30) == 1
    ino = path.stat().st_ino
    assert publish_node_table(path, {0: 150, 1: 50}) == 2
    assert path.stat().st_ino == ino                      # seqlock update in place
    t = read_node_table(path)
    assert t.generation == 2 and t.seq % 2 == 0 and t.seq > 0
    assert {n: e.free_bytes for n, e in t.nodes.items()} == {0: 150, 1: 50}
    old = os.open(path, os.O_RDONLY)
    try:
        assert publish_node_table(path, {0: 1, 1: 2, 2: 3}) == 3   # layout change: replace
        assert path.stat().st_ino != ino
        assert decode_table(os.pread(old, 64 + 64, 0)).superseded
    finally:
        os.close(old)
    assert set(read_node_table(path).nodes) == {0, 1, 2}


def test_a_writer_keeps_updating_the_file_it_mapped(tmp_path):
    path = tmp_path / "node-table"
    writer = NodeTableWriter(path)
    assert writer.publish({0: 100, 1: 200}, valid_for=30) == 1
    ino = path.stat().st_ino
    for generation, free in ((2, 150), (3, 175)):
        assert writer.publish({0: free, 1: 50}, valid_for=30) == generation
        t = read_node_table(path)
        assert path.stat().st_ino == ino and t.seq % 2 == 0 and t.expires_ns > t.updated_ns
        assert (t.generation, t.nodes[0].free_bytes) == (generation, free)


@pytest.mark.parametrize("change", ["removed", "replaced", "symlink", "more nodes"])
def test_a_writer_publishes_afresh_when_its_file_changed_under_it(tmp_path, change):
    path = tmp_path / "node-table"
    writer = NodeTableWriter(path)
    writer.publish({0: 100, 1: 200})
    nodes = {0: 7, 1: 8}
    if change == "removed":
        path.unlink()
    elif change == "replaced":           # another file at the path: the mapped one is not it
        publish_node_table(tmp_path / "other", {0: 1, 1: 1})
        os.replace(tmp_path / "other", path)
    elif change == "symlink":            # planted: replaced, never written through
        (tmp_path / "victim").write_bytes(b"precious\n")
        path.unlink()
        path.symlink_to(tmp_path / "victim")
    else:
        nodes = {0: 7, 1: 8, 2: 9}
    writer.publish(nodes)
    assert not path.is_symlink()
    if change == "symlink":
        assert (tmp_path / "victim").read_bytes() == b"precious\n"
    assert {n: e.free_bytes for n, e in read_node_table(path).nodes.items()} == nodes
    writer.publish({n: v + 1 for n, v in nodes.items()})      # and it maps the new file
    assert {n: e.free_bytes for n, e in read_node_table(path).nodes.items()} == {n: v + 1 for n, v in nodes.items()}


def test_stats_decode():
    data = shim.STATS_MAGIC + (1).to_bytes(4, "little") + (16).to_bytes(4, "little") + \
        b"".join(i.to_bytes(8, "little") for i in range(16))
    s = decode_stats(data)
    assert s["calls"] == 0 and s["placed"] == 1 and s["vfork_unplaced"] == 13
    assert "reserved14" not in s


# --- env -------------------------------------------------------------------------

def test_build_env_prepends_and_cleans():
    base = {"LD_PRELOAD": "/x/other.so", "NUMAD_SHIM_CPUS": "1", "PATH": "/bin"}
    env = build_env(base, strategy="spread", nodes={3, 1, 2}, root_pid=42, library="/lib/shim.so")
    assert env["LD_PRELOAD"] == "/lib/shim.so /x/other.so"
    assert env["NUMAD_SHIM_STRATEGY"] == "spread" and env["NUMAD_SHIM_NODES"] == "1-3"
    assert env["NUMAD_SHIM_ROOT"] == "42" and env["NUMAD_SHIM_MODE"] == "preferred"
    assert "NUMAD_SHIM_CPUS" not in env and env["PATH"] == "/bin"
    again = build_env(env, strategy="fixed", nodes={1}, library="/lib/shim.so")
    assert again["LD_PRELOAD"] == "/lib/shim.so /x/other.so"


@pytest.mark.parametrize("kw", [
    dict(strategy="fixed", nodes={0, 1}), dict(strategy="nope", nodes={0}),
    dict(strategy="spread", nodes=set()), dict(strategy="fixed", nodes={0}, mode="local"),
])
def test_build_env_refuses(kw):
    with pytest.raises(shim.ShimError):
        build_env({}, library="/x.so", **kw)


def test_shim_path_exports():
    path = shim_path()
    assert path.is_file()
    out = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True)
    if out.returncode == 0:
        for sym in ("fork", "vfork", "_Fork", "posix_spawn", "posix_spawnp", "system", "popen"):
            assert f" T {sym}\n" in out.stdout, sym
    needed = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True).stdout
    assert "libpython" not in needed and "libnuma" not in needed


# --- exec ------------------------------------------------------------------------

def _exec(args: str, **env_extra) -> subprocess.CompletedProcess:
    code = ("import sys; from numad_py.cli.exec_cmd import exec_main; "
            f"sys.exit(exec_main({args}))")
    return subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env_extra})


def test_exec_fixed_node_applies_to_the_program_itself():
    probe = ("import json, os; from numad_py.numa import get_mempolicy as g; "
             "from numad_py.shim import process_stats; p = g(); "
             "print(json.dumps([p.mode.name, sorted(p.nodes), os.environ['LD_PRELOAD'], process_stats()]))")
    r = _exec(f"[{PY!r}, '-c', {probe!r}], node={NODE0}, spread=None, least_loaded=None, cpus=True")
    assert r.returncode == 0, r.stderr
    import json
    mode, nodes, preload, stats = json.loads(r.stdout)
    assert mode == "PREFERRED" and nodes == [NODE0]
    assert preload.split()[0] == str(shim_path())
    assert stats is not None and stats["state"] == 1      # the exec'd program is the root


@pytest.mark.parametrize("args,needle", [
    ("['true'], node=999, spread=None, least_loaded=None, cpus=False", "does not exist"),
    ("['true'], node=None, spread=None, least_loaded=None, cpus=False", "exactly one"),
    ("[], node=0, spread=None, least_loaded=None, cpus=False", "no command"),
    ("['true'], node=0, spread=None, least_loaded=None, cpus=False, mode='weird'", "unknown mode"),
])
def test_exec_errors_clearly(args, needle):
    r = _exec(args)
    assert r.returncode == 2 and needle in r.stderr, r.stderr


def test_exec_missing_program():
    r = _exec("['/nonexistent/prog'], node=0, spread=None, least_loaded=None, cpus=False")
    assert r.returncode == 127 and "/nonexistent/prog" in r.stderr


# --- real forks under the shim -----------------------------------------------------

def test_every_fork_flavour_works_and_places(tmp_path):
    stats = tmp_path / "stats"
    (rec,) = run_workload(["basic"], shim_env("fixed", {NODE0}, stats=stats))
    assert rec["before"]["mode"] == "default" and rec["after"]["mode"] == "default"  # restored
    for how, pol in rec["children"].items():
        if how != "system_status":
            assert pol == {"mode": "preferred", "nodes": [NODE0]}, how
    assert rec["children"]["system_status"] == 3
    s = read_stats(stats)
    assert s["placed"] >= 6 and s["fallback"] == 0, s


def test_root_only_places_its_children(tmp_path):
    """With NUMAD_SHIM_ROOT=<other pid> the workload is a descendant: pass-through."""
    stats = tmp_path / "stats"
    (rec,) = run_workload(["basic"], shim_env("fixed", {NODE0}, stats=stats, root_pid=1))
    assert rec["children"]["os.fork"] == {"mode": "default", "nodes": []}
    s = read_stats(stats)
    assert s["placed"] == 0 and s["passthrough"] >= 6


def test_running_reads_lines_that_arrive_together(tmp_path):
    # Two records in one write: a reader that select()s on a buffered file
    # object would wait for the second one until its timeout.
    body = ("import os, sys\n"
            "os.write(1, b'{\"kind\": \"a\"}\\n{\"kind\": \"b\"}\\n')\n"
            "sys.stdin.read()\n")
    run = Running([], dict(os.environ), program=named_program(tmp_path, "twolines", body))
    try:
        assert [r["kind"] for r in run.read_until(lambda r: len(r) == 2, timeout=10)] == ["a", "b"]
    finally:
        assert run.finish() == 0


def test_root_children_exec_without_the_shim_and_root_keeps_it():
    """Under `numad-py exec`, what the root's forked children exec does not load the
    (there dormant) shim; other preloaded libraries stay; the root's own env is untouched."""
    lib = str(shim_path())
    env = dict(os.environ, LD_PRELOAD="libm.so.6")
    wrap = [PY, "-m", "numad_py.cli", "exec", "--node", str(NODE0), "--"]
    (rec,) = run_workload(["preload", "--lib", lib], env, wrap=wrap)
    assert rec["fork_exec"] == {"mapped": False, "preload": "libm.so.6"}
    assert rec["own_preload"].split() == [lib, "libm.so.6"]


def test_every_exec_form_of_a_root_child_drops_the_shim(tmp_path):
    exe = build_c(tmp_path, "forms", EXEC_FORMS_C)
    lib = str(shim_path())
    forms = ["execl", "execlp", "execle", "execv", "execvp", "execve", "execvpe", "own-envp", "self"]
    env = dict(os.environ, LD_PRELOAD="libm.so.6")
    out = subprocess.run([PY, "-m", "numad_py.cli", "exec", "--node", str(NODE0), "--", str(exe), *forms],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    seen = {}
    for block in out.stdout.split("== ")[1:]:
        form, _, rest = block.partition("\n")
        seen[form] = [line for line in rest.splitlines() if line.startswith("LD_PRELOAD=")]
    for form in forms[:7]:
        assert seen[form] == ["LD_PRELOAD=libm.so.6"], (form, seen[form])
    assert seen["own-envp"] == ["LD_PRELOAD=kept-as-given"]      # an explicit envp is the caller's
    assert seen["self"] == [f"LD_PRELOAD={lib} libm.so.6"]        # the root keeps the shim


def test_a_root_child_binds_no_symbol_of_the_shim_on_its_way_to_exec(tmp_path):
    """Each symbol the shim binds lazily in a forked child is bound again in every child (the
    root never made that call): a lookup and page faults per fork+exec.  ld.so's own log
    (LD_DEBUG=bindings, lines prefixed with the pid) shows every binding; the children's
    lines may bind the program's execv to the shim, but nothing the shim itself calls."""
    exe = build_c(tmp_path, "fork_exec", FORK_EXEC_C)
    lib = str(shim_path())
    env = dict(os.environ, LD_DEBUG="bindings")
    out = subprocess.run([PY, "-m", "numad_py.cli", "exec", "--node", str(NODE0), "--", str(exe)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    root = out.stdout.split()[0]
    by_pid: dict[str, list[str]] = {}
    for line in out.stderr.splitlines():
        pid, _, rest = line.strip().partition(":")
        if pid.isdigit() and "binding file " in rest:
            by_pid.setdefault(pid, []).append(rest.strip())
    children = {pid: lines for pid, lines in by_pid.items() if pid != root}
    assert len(children) == 3, sorted(by_pid)
    assert any(f"binding file {lib} " in line for line in by_pid[root])   # the log does show the shim's
    for pid, lines in children.items():
        assert [line for line in lines if line.startswith(f"binding file {lib} ")] == [], pid


def test_without_a_root_exec_descendants_keep_the_shim():
    # Every process under the shim places (a unit's LD_PRELOAD): descendants need it.
    lib = str(shim_path())
    (rec,) = run_workload(["preload", "--lib", lib], shim_env("fixed", {NODE0}))
    assert rec["fork_exec"] == {"mapped": True, "preload": lib}


def test_bad_config_falls_back_and_counts(tmp_path):
    for nodes, extra in ((NODE0, {"NUMAD_SHIM_NODES": "zz"}), (NODE0, {"NUMAD_SHIM_NODES": "999"}),
                         (NODE0, {"NUMAD_SHIM_MODE": "sideways"})):
        stats = tmp_path / f"stats{len(list(tmp_path.iterdir()))}"
        (rec,) = run_workload(["basic"], shim_env("fixed", {nodes}, stats=stats, extra=extra))
        assert rec["children"]["os.fork"]["mode"] == "default"
        s = read_stats(stats)
        assert s["placed"] == 0 and s["fallback_config"] >= 6 and s["fallback"] == s["fallback_config"], (extra, s)


def test_least_loaded_without_table_falls_back(tmp_path):
    stats = tmp_path / "stats"
    env = shim_env("least-loaded", {NODE0}, stats=stats, table=tmp_path / "missing")
    (rec,) = run_workload(["basic"], env)
    assert rec["children"]["os.fork"]["mode"] == "default"
    s = read_stats(stats)
    assert s["fallback_no_table"] >= 6 and s["placed"] == 0, s


def test_least_loaded_with_table(tmp_path):
    table, stats = tmp_path / "table", tmp_path / "stats"
    publish_node_table(table, {NODE0: 1 << 30}, valid_for=600)
    (rec,) = run_workload(["basic"], shim_env("least-loaded", {NODE0}, stats=stats, table=table))
    assert rec["children"]["os.fork"] == {"mode": "preferred", "nodes": [NODE0]}
    assert read_stats(stats)["placed"] >= 6


def test_least_loaded_stale_table(tmp_path):
    table, stats = tmp_path / "table", tmp_path / "stats"
    publish_node_table(table, {NODE0: 1 << 30}, valid_for=0.001)
    time.sleep(0.01)
    run_workload(["basic"], shim_env("least-loaded", {NODE0}, stats=stats, table=table))
    s = read_stats(stats)
    assert s["fallback_stale_table"] >= 6 and s["placed"] == 0, s


def test_least_loaded_picks_most_free_and_spreads_bursts(tmp_path):
    """Needs no second node: the table is the shim's only view, so fake node ids
    are never used for a syscall unless chosen; choose among {NODE0, 5}."""
    table, stats = tmp_path / "table", tmp_path / "stats"
    # Node 5 is absent from the table -> only NODE0 is a candidate.
    publish_node_table(table, {NODE0: 1 << 30}, valid_for=600)
    env = shim_env("least-loaded", {NODE0}, stats=stats, table=table)
    env["NUMAD_SHIM_NODES"] = f"{NODE0},5" if NODE0 != 5 else "5,6"
    env["NUMAD_SHIM_SYSFS"] = str(_fake_sysfs(tmp_path, [NODE0, 5]))
    (rec,) = run_workload(["basic"], env)
    assert rec["children"]["os.fork"] == {"mode": "preferred", "nodes": [NODE0]}


def _fake_sysfs(tmp_path, nodes):
    root = tmp_path / "sys"
    for n in nodes:
        d = root / "devices/system/node" / f"node{n}"
        d.mkdir(parents=True, exist_ok=True)
        real = f"/sys/devices/system/node/node{n}/cpulist"
        (d / "cpulist").write_text(open(real).read() if os.path.exists(real) else "\n")
    return root


def test_table_republished_while_mapped(tmp_path):
    """A process keeps forking while the daemon republishes in place and by replacement."""
    table, stats = tmp_path / "table", tmp_path / "stats"
    publish_node_table(table, {NODE0: 1 << 30}, valid_for=600)
    env = shim_env("least-loaded", {NODE0}, stats=stats, table=table)
    run = Running(["threads", "--threads", "4", "--forks", "400"], env)
    for i in range(50):
        publish_node_table(table, {NODE0: (1 << 30) + i}, valid_for=600)
    publish_node_table(table, {NODE0: 1 << 30, NODE0 + 1: 0}, valid_for=600)  # replace
    recs = run.read_until(lambda r: r[-1]["kind"] == "threads", timeout=120)
    assert run.finish() == 0
    assert recs[-1]["errors"] == []
    s = read_stats(stats)
    assert s["placed"] + s["fallback"] == s["calls"] and s["placed"] >= 350, s


def test_threads_fork_concurrently(tmp_path):
    stats = tmp_path / "stats"
    (rec,) = run_workload(["threads", "--threads", "8", "--forks", "1000", "--expect-nodes", str(NODE0)],
                          shim_env("fixed", {NODE0}, stats=stats), timeout=300)
    assert rec["forks"] == 1000 and rec["errors"] == [] and rec["wrong_policy"] == 0
    assert rec["after"]["mode"] == "default"
    assert read_stats(stats)["placed"] == 1000


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the asm vfork entry is x86-64 only")
def test_c_vfork(tmp_path):
    exe = build_c(tmp_path, "vf", VFORK_C)
    stats = tmp_path / "stats"
    out = subprocess.run([str(exe), "400"], env=shim_env("fixed", {NODE0}, stats=stats, cpus=True),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"child {1000 + (1 << NODE0)}" in out.stdout     # MPOL_PREFERRED on NODE0
    assert "parent 0 marker 42" in out.stdout                # restored, stack intact
    s = read_stats(stats)
    assert s["placed"] == 400 and s["pin_failed"] == 0, s


@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOSYS])
def test_seccomp_denies_set_mempolicy(tmp_path, err):
    exe = build_c(tmp_path, "seccomp_deny", SECCOMP_C)
    stats = tmp_path / "stats"
    nr = 238 if platform.machine() == "x86_64" else None
    if nr is None:
        pytest.skip("syscall number table only for x86-64")
    (rec,) = run_workload(["basic"], shim_env("fixed", {NODE0}, stats=stats),
                          wrap=[str(exe), str(nr), str(err), "--"])
    assert rec["children"]["os.fork"]["mode"] == "default"
    assert rec["children"]["system_status"] == 3
    s = read_stats(stats)
    assert s["fallback_set_policy"] >= 6 and s["placed"] == 0, s


def test_publishers_replace_a_planted_symlink_instead_of_writing_through_it(tmp_path):
    from numad_py.shim import publish_shim_rules
    from numad_py.config.models import Rule

    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    table, rules = tmp_path / "node-table", tmp_path / "shim-rules"
    table.symlink_to(victim)
    rules.symlink_to(victim)
    pid_tmp = tmp_path / f".node-table.{os.getpid()}.tmp"        # the temp name, planted too
    pid_tmp.symlink_to(victim)
    publish_node_table(table, {0: 100})
    publish_shim_rules(rules, [Rule.model_validate({"match": {"comm": "cc"}, "spread_children": "0"})])
    assert victim.read_bytes() == b"precious\n"
    assert not table.is_symlink() and read_node_table(table).nodes[0].free_bytes == 100
    assert not rules.is_symlink() and rules.read_text().startswith("numad-py-shim-rules 2\n")
