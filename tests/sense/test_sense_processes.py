"""The scan against a fake /proc + sysfs tree, and one smoke test on the real /proc."""

from __future__ import annotations

import os
import re
from pathlib import Path

import psutil
import pytest

from numad_py.config import Config, Match, Rule
from numad_py.errors import PermissionDenied
from numad_py.sense import processes
from numad_py.procfs import parse_proc_cgroup
from numad_py.sense.maps import process_residency
from numad_py.sense.residency import memory_residency
from numad_py.procfs import parse_stat
from numad_py.sense.processes import Sensor, parse_cpu_times, take_snapshot

from fake_tree import BTIME, PAGE, TICKS, FakeMachine


def rules(*matches: dict, **daemon) -> Config:
    return Config.model_validate(
        {"daemon": daemon, "rules": [Rule(name=f"r{i}", match=Match(**m), nodes="0") for i, m in enumerate(matches)]}
    )


@pytest.fixture
def machine(tmp_path) -> FakeMachine:
    return FakeMachine(tmp_path)


def sensor(machine: FakeMachine, clock=lambda: 42.0) -> Sensor:
    return Sensor(proc_root=machine.proc, sys_root=machine.sys, clock=clock)


def test_snapshot_holds_nodes_and_only_candidates(machine):
    machine.add_process(10, "postgres", starttime=250, rss_pages=1000, uid=0)
    machine.add_process(11, "nginx")
    machine.add_process(2, "kthreadd", flags=0x00208040)
    machine.add_process(12, "postgres", flags=0x00208040)  # a kernel thread named like the rule
    snap = sensor(machine).snapshot(rules({"comm": "postgres"}))
    assert snap.time == 42.0
    assert [n.id for n in snap.nodes] == [0, 1]
    assert snap.nodes[1].cpus == {2, 3} and snap.nodes[1].mem_free == 2 * 1024**3
    assert snap.distances[(0, 1)] == 21
    assert snap.numa_balancing == 1
    (proc,) = snap.processes
    assert proc.pid == 10 and proc.comm == "postgres"
    assert proc.start_time == 250 / TICKS + BTIME
    assert proc.rss == 1000 * PAGE
    assert proc.residency == {0: 2 * 4096, 1: 4096}
    assert (proc.uid, proc.user) == (0, "root")
    assert proc.cpu_affinity == {0, 1, 2, 3} and proc.threads == 4
    assert proc.mems_allowed == {0, 1}
    # A rule on comm reads none of these: matching is their only use.
    assert (proc.cgroup, proc.exe, proc.cmdline) == (None, None, ())


def test_a_candidate_carries_what_its_rules_matched_on(machine):
    machine.add_process(10, "postgres", cmdline=("postgres", "-D", "/db"), exe="/usr/lib/pg/bin/postgres",
                        cgroup="/system.slice/pg.service")
    snap = sensor(machine).snapshot(rules({"comm": "postgres", "cgroup": "/system.slice/*",
                                           "exe": "/usr/lib/.*", "cmdline": "-D"}))
    (proc,) = snap.processes
    assert proc.cgroup == "/system.slice/pg.service"
    assert proc.exe == "/usr/lib/pg/bin/postgres" and proc.cmdline == ("postgres", "-D", "/db")


def test_comm_with_spaces_and_parens():
    stat = parse_stat("77 (a (b) c) R 1 " + " ".join(["0"] * 4 + ["64"] + ["0"] * 10 + ["3", "0", "9", "0", "5"]))
    assert (stat["pid"], stat["comm"], stat["flags"], stat["threads"], stat["starttime"], stat["rss_pages"]) == (
        77, "a (b) c", 64, 3, 9, 5)


def test_lazy_criteria_and_global_filters(machine):
    machine.add_process(20, "worker", cmdline=("python", "job.py", "--fast"), cgroup="/system.slice/job.service")
    machine.add_process(21, "worker", cmdline=("python", "other.py"))
    by_cmdline = sensor(machine).snapshot(rules({"cmdline": r"job\.py"}))
    assert [p.pid for p in by_cmdline.processes] == [20]
    by_unit = sensor(machine).snapshot(rules({"unit": "job.service"}))
    assert [p.pid for p in by_unit.processes] == [20]
    excluded = sensor(machine).snapshot(rules({"comm": "worker"}, exclude=["work.*"]))
    assert excluded.processes == ()


def test_vanished_processes_are_skipped(machine):
    machine.add_process(30, "app")
    half_gone = machine.add_process(31, "app")
    (half_gone / "status").unlink()  # exited between reading stat and status
    (machine.proc / "32").mkdir()    # exited before its stat was read
    snap = sensor(machine).snapshot(rules({"comm": "app", "user": "root"}))
    assert [p.pid for p in snap.processes] == [30]


def test_unreadable_residency_becomes_none(machine, monkeypatch):
    machine.add_process(40, "app")

    def denied(pid, memory, proc_root):
        raise PermissionDenied("reading numa_maps", capability="ptrace")

    monkeypatch.setattr(processes, "memory_residency", denied)
    (proc,) = sensor(machine).snapshot(rules({"comm": "app"})).processes
    assert proc.residency is None


def test_spread_children_rule_reads_numa_maps_once_for_residency_and_policy(machine, monkeypatch):
    machine.add_process(42, "app", numa_maps="7f0000000000 prefer:1 anon=3 N0=2 N1=1 kernelpagesize_kB=4\n"
                                             "7f0000100000 prefer:1 anon=1 N1=1 kernelpagesize_kB=4\n")
    reads: list[str] = []
    real = processes.procfs.read_text

    def counted(pid, name, root):
        reads.append(name)
        return real(pid, name, root=root)

    monkeypatch.setattr(processes.procfs, "read_text", counted)
    config = Config.model_validate({"rules": [Rule(name="r", match=Match(comm="app"), nodes="0",
                                                   spread_children="0-1")]})
    (proc,) = sensor(machine).snapshot(config).processes
    assert (proc.task_policy, proc.residency) == ("prefer:1", {0: 2 * 4096, 1: 2 * 4096})
    assert reads.count("numa_maps") == 1


def test_unreadable_exe_becomes_none(machine):
    d = machine.add_process(41, "app")
    (d / "exe").unlink()
    (d / "exe").write_text("")  # readlink on a non-link fails with EINVAL, like EACCES: unknown
    (proc,) = sensor(machine).snapshot(rules({"comm": "app"})).processes
    assert proc.exe is None


def test_cpu_load_between_scans(machine):
    s = sensor(machine)
    first = s.snapshot(rules({"comm": "x"}))
    assert first.cpu_load == {0: pytest.approx(100 / 400), 1: pytest.approx(0.5)}  # since boot
    machine.set_cpu_times({0: (200, 100), 1: (100, 200), 2: (50, 150), 3: (50, 150)})
    second = s.snapshot(rules({"comm": "x"}))
    assert second.cpu_load == {0: pytest.approx(1.0), 1: pytest.approx(0.0)}


def test_machine_without_numa_sysfs(tmp_path):
    machine = FakeMachine(tmp_path, nodes={})
    (machine.sys / "devices/system/node/online").unlink()
    snap = sensor(machine).snapshot(rules({"comm": "x"}))
    assert snap.nodes == () and snap.cpu_load == {}


def test_numa_maps_residency_sums_pages_times_page_size(tmp_path):
    (tmp_path / "5").mkdir()
    (tmp_path / "5" / "numa_maps").write_text(
        "400000 default file=/bin/x mapped=10 N0=10 kernelpagesize_kB=4\n"
        "7f0000000000 default anon=512 dirty=512 N1=512 kernelpagesize_kB=2048\n"
        "7f1000000000 default stack anon=3 N0=1 N1=2 kernelpagesize_kB=4\n"
        "7f2000000000 default\n"
    )
    assert process_residency(5, str(tmp_path)) == {0: 11 * 4096, 1: 512 * 2 * 1024**2 + 2 * 4096}


MAPS = (
    "00400000-00410000 r-xp 00000000 08:01 42  /bin/x\n"
    "01000000-01100000 rw-p 00000000 00:00 0  [heap]\n"
    "7f0000000000-7f0000400000 rw-p 00000000 00:00 0 \n"
    "7f1000000000-7f1000010000 rw-s 00000000 00:05 7  /dev/shm/buf\n"
    "7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0  [stack]\n"
)
NUMA_MAPS = (
    "00400000 default file=/bin/x mapped=16 N0=16 kernelpagesize_kB=4\n"
    "01000000 default heap anon=256 N0=200 N1=56 kernelpagesize_kB=4\n"
    "7f0000000000 default anon=1024 N1=1024 kernelpagesize_kB=4\n"
    "7f1000000000 default file=/dev/shm/buf mapped=16 N0=4 N1=12 kernelpagesize_kB=4\n"
    "7ffc00000000 default stack anon=5 N0=5 kernelpagesize_kB=4\n"
)


@pytest.mark.parametrize(
    "memory, want",
    [
        ("all", {0: (16 + 200 + 4 + 5) * PAGE, 1: (56 + 1024 + 12) * PAGE}),
        (["[heap]"], {0: 200 * PAGE, 1: 56 * PAGE}),
        (["anon"], {0: 200 * PAGE, 1: (56 + 1024) * PAGE}),      # [heap] and unnamed anon
        (["/dev/shm/*"], {0: 4 * PAGE, 1: 12 * PAGE}),
        (["[heap]", "anon"], {0: 200 * PAGE, 1: (56 + 1024) * PAGE}),  # a mapping counts once
        (["/nothing/*"], {}),
    ],
)
def test_memory_residency_counts_only_what_the_rule_moves(tmp_path, memory, want):
    (tmp_path / "5").mkdir()
    (tmp_path / "5" / "maps").write_text(MAPS)
    (tmp_path / "5" / "numa_maps").write_text(NUMA_MAPS)
    assert memory_residency(5, memory, str(tmp_path)) == want


def test_snapshot_residency_follows_the_matching_rules_memory(machine):
    d = machine.add_process(60, "app", numa_maps=NUMA_MAPS)
    (d / "maps").write_text(MAPS)
    config = Config.model_validate({"rules": [
        Rule(name="heap-only", match=Match(comm="app"), nodes="1", memory=["[heap]"]),
        Rule(name="whole", match=Match(comm="app"), nodes="1"),   # never reached: first match wins
    ]})
    (proc,) = sensor(machine).snapshot(config).processes
    assert proc.residency == {0: 200 * PAGE, 1: 56 * PAGE}


@pytest.mark.parametrize(
    "text, path",
    [("0::/system.slice/a.service\n", "/system.slice/a.service"), ("0::/\n", "/"),
     ("4:memory:/x\n0::/user.slice\n", "/user.slice"), ("4:memory:/x\n", None), ("", None)],
)
def test_parse_proc_cgroup(text, path):
    assert parse_proc_cgroup(text) == path


def test_parse_cpu_times_ignores_the_total_line():
    assert parse_cpu_times("cpu  9 9 9 9\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n") == {0: (1 + 2 + 3 + 6 + 7 + 8, 36)}


def test_real_proc_finds_this_process_with_psutils_identity():
    me = psutil.Process()
    config = rules({"comm": re.escape(me.name()[:15]), "exe": ".*"})
    mine = [p for p in take_snapshot(config).processes if p.pid == os.getpid()]
    assert len(mine) == 1
    assert mine[0].start_time == me.create_time()  # exactly: the executor compares identities
    assert mine[0].residency and sum(mine[0].residency.values()) > 0
    assert Path(mine[0].exe).resolve() == Path(me.exe()).resolve()
    assert mine[0].mems_allowed                     # from this process's own status


def test_a_process_renamed_into_a_rule_is_a_candidate_on_the_next_scan(machine):
    # The scan remembers comms that rule every rule out; the memory is per comm,
    # so a rename (exec, prctl) is seen at once.
    d = machine.add_process(50, "idle")
    s = sensor(machine)
    config = rules({"comm": "postgres"})
    assert s.snapshot(config).processes == ()
    (d / "stat").write_text((d / "stat").read_text().replace("(idle)", "(postgres)"))
    assert [p.pid for p in s.snapshot(config).processes] == [50]


def test_a_new_config_forgets_the_comms_the_old_one_ruled_out(machine):
    machine.add_process(51, "nginx")
    s = sensor(machine)
    assert s.snapshot(rules({"comm": "postgres"})).processes == ()
    assert [p.pid for p in s.snapshot(rules({"comm": "nginx"})).processes] == [51]


def test_a_comm_is_not_ruled_out_while_a_rule_without_comm_remains(machine):
    machine.add_process(52, "worker", uid=0)
    s = sensor(machine)
    config = rules({"comm": "postgres"}, {"user": "root"})
    assert [p.pid for p in s.snapshot(config).processes] == [52]
    assert [p.pid for p in s.snapshot(config).processes] == [52]


def test_free_memory_is_read_every_scan_the_rest_of_the_topology_on_change_or_after_a_while(machine):
    now = [1000.0]
    s = sensor(machine, clock=lambda: now[0])
    config = rules({"comm": "postgres"})
    node1 = machine.sys / "devices/system/node/node1"
    assert s.snapshot(config).nodes[1].cpus == {2, 3}
    (node1 / "cpulist").write_text("2\n")                       # a CPU went offline
    (node1 / "meminfo").write_text("Node 1 MemTotal:       8388608 kB\nNode 1 MemFree:        1024 kB\n")
    now[0] += processes.TOPOLOGY_REFRESH - 1
    snap = s.snapshot(config)
    assert snap.nodes[1].mem_free == 1024 * 1024                 # free memory: this scan
    assert snap.nodes[1].cpus == {2, 3}                          # CPUs: not yet
    now[0] += 1
    assert s.snapshot(config).nodes[1].cpus == {2}               # after TOPOLOGY_REFRESH
    (node1 / "cpulist").write_text("2-3\n")
    now[0] -= 3600                                               # a clock stepping back refreshes too
    assert s.snapshot(config).nodes[1].cpus == {2, 3}


def test_a_node_coming_online_is_seen_at_the_next_scan(tmp_path):
    machine = FakeMachine(tmp_path, nodes={0: "0-1"})
    s = sensor(machine)
    config = rules({"comm": "postgres"})
    assert [n.id for n in s.snapshot(config).nodes] == [0]
    base = machine.sys / "devices/system/node"
    (base / "node1").mkdir()
    (base / "node1" / "cpulist").write_text("\n")                 # memory only
    (base / "node1" / "meminfo").write_text("Node 1 MemTotal:       8388608 kB\nNode 1 MemFree:        4096 kB\n")
    (base / "node0" / "distance").write_text("10 20\n")
    (base / "node1" / "distance").write_text("20 10\n")
    (base / "online").write_text("0-1\n")
    snap = s.snapshot(config)
    assert [n.id for n in snap.nodes] == [0, 1] and not snap.nodes[1].has_cpu
    assert snap.distances[(0, 1)] == 20


def test_a_candidate_of_a_comm_rule_costs_its_status_and_its_residency(machine, monkeypatch):
    """Its cpuset's nodes come from the status file read for affinity anyway; before, a
    candidate also cost its cgroup, exe and cmdline files and a walk up the cgroup tree."""
    reads: list[tuple[int, str]] = []
    for reader in ("read_bytes", "readlink"):   # read_text reads through read_bytes
        real = getattr(processes.procfs, reader)

        def counted(pid, name, *, root, _real=real, **kw):
            reads.append((pid, name))
            return _real(pid, name, root=root, **kw)

        monkeypatch.setattr(processes.procfs, reader, counted)
    machine.add_process(10, "db", mems_allowed="1")
    machine.add_process(11, "db", mems_allowed="0-1")
    snap = sensor(machine).snapshot(rules({"comm": "db"}))
    assert {p.pid: p.mems_allowed for p in snap.processes} == {10: {1}, 11: {0, 1}}
    assert sorted(reads) == [(10, "numa_maps"), (10, "status"), (11, "numa_maps"), (11, "status")]


def test_an_auto_rule_reads_the_task_policy_with_the_residency(machine):
    machine.add_process(43, "app", numa_maps="7f0000000000 bind:1 anon=3 N1=3 kernelpagesize_kB=4\n")
    config = Config.model_validate({"rules": [Rule(name="r", match=Match(comm="app"), nodes="auto")]})
    (proc,) = sensor(machine).snapshot(config).processes
    assert (proc.task_policy, proc.residency) == ("bind:1", {1: 3 * 4096})
