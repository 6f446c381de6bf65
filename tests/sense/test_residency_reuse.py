"""The sensor reuses residency reads of processes no rule acts on this tick, while they stand."""

from __future__ import annotations

import pytest

from numad_py.config import Config, Match, Rule
from numad_py.decide.history import ProcessHistory
from numad_py.sense.processes import Sensor
from numad_py.sense.residency import MAX_REUSE_FOR, REUSE_FOR, page_migrations

from fake_tree import BTIME, PAGE, TICKS, FakeMachine

ON_NODE_0 = "7f0000000000 default anon=4 dirty=4 N0=4 kernelpagesize_kB=4\n"
ON_NODE_1 = "7f0000000000 default anon=4 dirty=4 N1=4 kernelpagesize_kB=4\n"
IDENTITY = (10, 500 / TICKS + BTIME)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config(**rule) -> Config:
    rule.setdefault("nodes", "0")
    return Config.model_validate({"rules": [Rule(name="db", match=Match(comm="db"), **rule)]})


def handled(**fields) -> dict:
    return {IDENTITY: ProcessHistory(first_seen=0.0, last_action=1.0, handled_once=True, **fields)}


@pytest.fixture
def machine(tmp_path) -> FakeMachine:
    m = FakeMachine(tmp_path)
    m.add_process(10, "db", numa_maps=ON_NODE_0, rss_pages=1000)
    set_migrations(m, 7)
    return m


def set_migrations(machine: FakeMachine, count: int) -> None:
    (machine.proc / "vmstat").write_text(f"nr_free_pages 1\npgmigrate_success {count}\npgmigrate_fail 3\n")


def move_to_node_1(machine: FakeMachine) -> None:
    (machine.proc / "10" / "numa_maps").write_text(ON_NODE_1)


class Scans:
    """A sensor with a history the test sets, as the daemon's is."""

    def __init__(self, machine: FakeMachine, history: dict | None):
        self.history = history
        self.clock = Clock()
        self.sensor = Sensor(proc_root=machine.proc, sys_root=machine.sys,
                             clock=self.clock, history=lambda: self.history)

    def residency(self, cfg: Config) -> dict[int, int] | None:
        (proc,) = self.sensor.snapshot(cfg).processes
        return dict(proc.residency) if proc.residency is not None else None


def test_a_process_that_is_not_due_keeps_its_last_read(machine):
    scans = Scans(machine, handled())
    assert scans.residency(config()) == {0: 4 * PAGE}
    move_to_node_1(machine)      # pages change node without a migration: freed and allocated again
    scans.clock.now += REUSE_FOR - 1
    assert scans.residency(config()) == {0: 4 * PAGE}
    scans.clock.now += 1         # ... but never for longer than REUSE_FOR
    assert scans.residency(config()) == {1: 4 * PAGE}


def test_a_read_that_agrees_with_the_one_before_stands_twice_as_long(machine):
    scans = Scans(machine, handled())
    scans.residency(config())
    scans.clock.now += REUSE_FOR             # read again: the same pages where they were
    assert scans.residency(config()) == {0: 4 * PAGE}
    move_to_node_1(machine)
    scans.clock.now += 2 * REUSE_FOR - 1
    assert scans.residency(config()) == {0: 4 * PAGE}
    scans.clock.now += 1
    assert scans.residency(config()) == {1: 4 * PAGE}


def test_a_read_that_found_a_change_stands_for_reuse_for_again(machine):
    scans = Scans(machine, handled())
    scans.residency(config())
    scans.clock.now += REUSE_FOR
    scans.residency(config())                # agreed: this one stands for 2 * REUSE_FOR
    move_to_node_1(machine)
    scans.clock.now += 2 * REUSE_FOR
    assert scans.residency(config()) == {1: 4 * PAGE}     # changed: back to REUSE_FOR
    (machine.proc / "10" / "numa_maps").write_text(ON_NODE_0)
    scans.clock.now += REUSE_FOR - 1
    assert scans.residency(config()) == {1: 4 * PAGE}
    scans.clock.now += 1
    assert scans.residency(config()) == {0: 4 * PAGE}


@pytest.mark.parametrize("moved, agrees", [(1, True), (2, False)])
def test_reads_agree_within_one_64th_of_their_size(machine, moved, agrees):
    maps = machine.proc / "10" / "numa_maps"
    maps.write_text("7f0000000000 default anon=128 dirty=128 N0=128 kernelpagesize_kB=4\n")
    scans = Scans(machine, handled())
    scans.residency(config())
    # `moved` pages on node 1 now: 2 * moved pages of difference, against 128 / 64 = 2
    maps.write_text(f"7f0000000000 default anon=128 dirty=128 N0={128 - moved} N1={moved} kernelpagesize_kB=4\n")
    scans.clock.now += REUSE_FOR
    scans.residency(config())
    move_to_node_1(machine)
    scans.clock.now += REUSE_FOR
    assert scans.residency(config()) == ({0: (128 - moved) * PAGE, 1: moved * PAGE} if agrees else {1: 4 * PAGE})


def test_agreeing_reads_stand_for_at_most_max_reuse_for(machine):
    scans = Scans(machine, handled())
    scans.residency(config())
    stand = REUSE_FOR
    while stand < MAX_REUSE_FOR:             # each agreeing read doubles the next wait
        scans.clock.now += stand
        scans.residency(config())
        stand *= 2
    scans.clock.now += MAX_REUSE_FOR         # and the read after the cap stands no longer
    scans.residency(config())
    move_to_node_1(machine)
    scans.clock.now += MAX_REUSE_FOR - 1
    assert scans.residency(config()) == {0: 4 * PAGE}
    scans.clock.now += 1
    assert scans.residency(config()) == {1: 4 * PAGE}


def test_a_migration_between_two_agreeing_reads_keeps_reuse_for(machine):
    scans = Scans(machine, handled())
    scans.residency(config())
    set_migrations(machine, 8)               # something moved somewhere, then we read again
    scans.clock.now += REUSE_FOR
    scans.residency(config())
    move_to_node_1(machine)
    scans.clock.now += REUSE_FOR
    assert scans.residency(config()) == {1: 4 * PAGE}


def test_any_page_migration_on_the_machine_makes_the_next_scan_read_again(machine):
    scans = Scans(machine, handled())
    scans.residency(config())
    move_to_node_1(machine)
    set_migrations(machine, 8)
    assert scans.residency(config()) == {1: 4 * PAGE}


@pytest.mark.parametrize("rss_pages, reread", [(1015, False), (985, False), (1016, True), (984, True)])
def test_a_changed_rss_makes_the_scan_read_again(machine, rss_pages, reread):
    scans = Scans(machine, handled())
    scans.residency(config())
    move_to_node_1(machine)
    stat = machine.proc / "10" / "stat"
    stat.write_text(stat.read_text().replace(" 1000000 1000 ", f" 1000000 {rss_pages} "))
    assert scans.residency(config()) == ({1: 4 * PAGE} if reread else {0: 4 * PAGE})


IN_PLACE = {IDENTITY: ProcessHistory(first_seen=0.0)}   # seen, nothing ever planned for it


def test_a_process_a_once_rule_found_in_place_keeps_its_last_read(machine):
    scans = Scans(machine, IN_PLACE)
    assert scans.residency(config()) == {0: 4 * PAGE}
    move_to_node_1(machine)
    assert scans.residency(config()) == {0: 4 * PAGE}


def test_an_every_rule_keeps_the_read_between_its_checks(machine):
    scans = Scans(machine, handled(last_checked=1000.0))   # checked now, found in place
    assert scans.residency(config(every="30s")) == {0: 4 * PAGE}
    move_to_node_1(machine)
    scans.clock.now += 29
    assert scans.residency(config(every="30s")) == {0: 4 * PAGE}
    scans.clock.now += 1         # the next check reads afresh
    assert scans.residency(config(every="30s")) == {1: 4 * PAGE}


@pytest.mark.parametrize("history, rule", [
    ({}, {}),                                                   # first sight of a `once` rule
    (handled(), {"every": "30s"}),                              # `every` is due again
    (IN_PLACE, {"every": "30s"}),                               # ... also when it was in place
    ({IDENTITY: ProcessHistory(first_seen=0.0, last_action=1.0)}, {}),   # a failed `once`: retry
    (None, {}),                                                 # no history: a one-off snapshot
    (handled(), {"nodes": "auto", "tier": {"fast": "0", "slow": "1"}}),  # tier rules keep their own pace
], ids=["first-sight", "every", "every-in-place", "retry", "no-history", "tier"])
def test_a_process_a_rule_acts_on_is_read_every_scan(machine, history, rule):
    scans = Scans(machine, history)
    scans.residency(config(**rule))
    move_to_node_1(machine)
    scans.clock.now += 31
    assert scans.residency(config(**rule)) == {1: 4 * PAGE}


def test_a_rule_with_another_memory_selection_is_read_again(machine):
    (machine.proc / "10" / "maps").write_text("7f0000000000-7f0000004000 rw-p 00000000 00:00 0  [heap]\n")
    scans = Scans(machine, handled())
    scans.residency(config())
    move_to_node_1(machine)
    assert scans.residency(config(memory=["[heap]"])) == {1: 4 * PAGE}


def test_without_vmstat_nothing_is_reused(machine):
    (machine.proc / "vmstat").unlink()
    scans = Scans(machine, handled())
    scans.residency(config())
    move_to_node_1(machine)
    assert scans.residency(config()) == {1: 4 * PAGE}


def test_a_process_that_left_the_candidates_is_forgotten(machine):
    scans = Scans(machine, handled())
    scans.residency(config())
    other = Config.model_validate({"rules": [Rule(name="x", match=Match(comm="other"), nodes="0")]})
    assert scans.sensor.snapshot(other).processes == ()
    move_to_node_1(machine)
    assert scans.residency(config()) == {1: 4 * PAGE}


def test_numa_balancing_moves_alone_do_not_make_the_scan_read_again(machine):
    scans = Scans(machine, handled())
    scans.residency(config())
    (machine.proc / "vmstat").write_text("numa_pages_migrated 100\npgmigrate_success 107\n")
    assert scans.residency(config()) == {0: 4 * PAGE}


def test_page_migrations_parses_vmstat():
    assert page_migrations("pgmigrate_fail 2\npgmigrate_success 12345\n") == 12345
    assert page_migrations("numa_pages_migrated 45\npgmigrate_success 12345\n") == 12300
    assert page_migrations("nr_free_pages 1\n") is None
    assert page_migrations("pgmigrate_success x\n") is None


def snapshot_process(scans: Scans, cfg: Config):
    (proc,) = scans.sensor.snapshot(cfg).processes
    return proc


def test_a_reused_read_keeps_what_the_status_said_without_reading_it(machine):
    scans = Scans(machine, handled())
    first = snapshot_process(scans, config())
    assert (first.uid, first.cpu_affinity, first.mems_allowed) == (0, frozenset(range(4)), frozenset({0, 1}))
    (machine.proc / "10" / "status").unlink()    # read, it would make the process look gone
    again = snapshot_process(scans, config())
    assert (again.uid, again.user, again.cpu_affinity, again.mems_allowed) == (
        first.uid, first.user, first.cpu_affinity, first.mems_allowed)


def test_the_status_is_read_again_with_the_residency(machine):
    scans = Scans(machine, handled())
    snapshot_process(scans, config())
    status = machine.proc / "10" / "status"
    status.write_text(status.read_text().replace("Cpus_allowed_list:\t0-3", "Cpus_allowed_list:\t2"))
    assert snapshot_process(scans, config()).cpu_affinity == frozenset(range(4))
    scans.clock.now += REUSE_FOR
    assert snapshot_process(scans, config()).cpu_affinity == frozenset({2})


def test_a_process_a_rule_acts_on_gets_its_status_read(machine):
    scans = Scans(machine, {})    # first sight of a `once` rule: due
    snapshot_process(scans, config())
    status = machine.proc / "10" / "status"
    status.write_text(status.read_text().replace("Mems_allowed_list:\t0-1", "Mems_allowed_list:\t1"))
    assert snapshot_process(scans, config()).mems_allowed == frozenset({1})


def test_a_rule_on_the_user_reads_the_status_even_when_the_residency_is_reused(machine):
    user_rule = Config.model_validate({"rules": [Rule(name="db", match=Match(comm="db", user="0"), nodes="0")]})
    scans = Scans(machine, handled())
    snapshot_process(scans, user_rule)
    status = machine.proc / "10" / "status"
    status.write_text(status.read_text().replace("Cpus_allowed_list:\t0-3", "Cpus_allowed_list:\t1"))
    again = snapshot_process(scans, user_rule)
    assert again.residency == {0: 4 * PAGE}            # reused ...
    assert again.cpu_affinity == frozenset({1})        # ... but the status the match read is used
