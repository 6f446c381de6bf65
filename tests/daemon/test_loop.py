"""The daemon's loop on the host, driven with fakes: the error boundary, stop, reload, advice."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from daemon_fakes import FakeExecutor, Script, action, make_daemon, tick_errors, write_config
from numad_py.config import ConfigError, load_config
from numad_py.errors import RetryLater


class BrokenStatusFile:
    def __init__(self):
        self.writes = 0
        self.removed = False

    def write(self, status):
        self.writes += 1
        raise OSError(28, "No space left on device")

    def remove(self):
        self.removed = True


def test_a_failing_stage_is_counted_and_the_next_tick_runs(tmp_path, caplog):
    script = Script(plan_actions=[action()], fail_on={
        "sense": {1: RetryLater("residency: try again")},
        "decide": {1: ValueError("planner bug")},
        "publish": {1: OSError(30, "Read-only file system")},
    })
    executor = FakeExecutor()
    status = BrokenStatusFile()
    d = make_daemon(tmp_path, script=script, executor=executor, status_file=status)
    with caplog.at_level(logging.INFO, logger="numad_py.daemon"):
        d.tick()          # sense raises RetryLater
        d.tick()          # decide raises ValueError
        d.tick()          # acts; the publisher raises OSError
        executor.fail = OSError(5, "I/O error")
        d.tick()          # the one action raises
        executor.fail = None
        d.tick()          # all well
    assert d.state.ticks == 5
    assert len(executor.calls) == 3                 # ticks 3, 4 and 5 reached the executor
    assert tick_errors(d.metrics) == {"reload": 0, "sense": 1, "decide": 1, "act": 1, "publish": 1,
                                      "status": 5, "state": 0, "other": 0}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("sense failed" in e and "RetryLater: residency" in e for e in errors), errors
    assert any("decide failed" in e and "planner bug" in e for e in errors), errors
    assert any("act failed" in e and "I/O error" in e for e in errors), errors
    # The same status-file failure on every tick is logged once, not five times.
    assert sum("status failed" in e for e in errors) == 1, errors
    assert d.status()["errors"][-1].startswith("tick 5 status: OSError")


def test_the_loop_runs_on_through_a_raising_tick_and_stops_within_one_interval(tmp_path):
    script = Script(plan_actions=[action()], fail_on={"sense": {1: RetryLater("busy")},
                                                      "publish": {2: OSError(28, "full")}})
    d = make_daemon(tmp_path, script=script, scan_interval="100ms")
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", d.run()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while d.state.ticks < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert d.state.ticks >= 4, "the loop stopped after a raising tick"
    # Now a long interval (through a reload, in the loop): a stop must end it at once, not after 5 s.
    write_config(tmp_path, scan_interval="5s")
    d.request_reload()
    time.sleep(0.3)
    assert d.config.daemon.scan_interval == 5.0
    t0 = time.monotonic()
    d.request_stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - t0 < 1.0
    assert result["rc"] == 0
    assert tick_errors(d.metrics)["sense"] == 1 and tick_errors(d.metrics)["publish"] == 1


@pytest.mark.parametrize("exc", [
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    RecursionError("maximum recursion depth exceeded"),
    OverflowError("the repetition number is too large"),
    ValueError("duration out of range"),
    MemoryError(),
])
def test_a_reload_that_raises_anything_keeps_the_old_rules(tmp_path, exc, caplog):
    def loader():
        raise exc

    executor = FakeExecutor()
    d = make_daemon(tmp_path, loader=loader, executor=executor)
    before = d.config
    d.request_reload()
    with caplog.at_level(logging.ERROR, logger="numad_py.daemon"):
        d._reload()
    assert d.config is before and executor.reconfigured == []
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0] and "keeping the previous 1 rule(s)" in lines[0], lines
    assert type(exc).__name__ in lines[0]
    assert "RELOADING=1" in d.notifier.sent and d.notifier.sent[-1] == "READY=1"
    d.tick()                       # and the loop goes on with the old rules
    assert d.state.ticks == 1


def test_reload_reconfigures_the_one_executor(tmp_path):
    executor = FakeExecutor()
    d = make_daemon(tmp_path, executor=executor)
    write_config(tmp_path, extra='budget = "4MiB"\nmax_stall = "50ms"')
    d._reload()
    assert d.executor is executor
    assert executor.reconfigured == [{"budget": 4 << 20, "max_stall": 0.05}]
    assert d.config.rules == []            # the new file has no rules


def test_a_config_error_with_several_problems_is_listed_under_one_header(tmp_path, caplog):
    d = make_daemon(tmp_path)
    bad = tmp_path / "rules.d" / "50-bad.toml"
    bad.write_text("[[rule]]\nname = 'x'\nmatch.comm = '('\nnodes = 'q'\n")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "numad-py.toml", online_nodes=None)
    with caplog.at_level(logging.ERROR, logger="numad_py.daemon"):
        d._reload()
    assert len(d.config.rules) == 1
    assert "50-bad.toml" in caplog.text


def test_advice_is_logged_once_per_process_and_advised_node(tmp_path, caplog):
    script = Script()
    d = make_daemon(tmp_path, script=script)
    with caplog.at_level(logging.INFO, logger="numad_py.daemon"):
        for n in range(5):
            script.plan_actions = (action("advise", {1}, reason=f"score 0.{70 + n}, load {n}%"),)
            d.tick()
        script.plan_actions = (action("advise", {0}, reason="score 0.9"),)
        d.tick()
    advice = [r.getMessage() for r in caplog.records if r.getMessage().startswith("advice")]
    assert len(advice) == 2, advice
    assert "score 0.70" in advice[0] and "score 0.9" in advice[1]


def test_a_huge_scan_interval_sleeps_in_slices(tmp_path):
    d = make_daemon(tmp_path, scan_interval="24h")  # the longest the config allows
    thread = threading.Thread(target=d.run, daemon=True)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive() and d.state.ticks == 1
    d.request_stop()
    thread.join(timeout=2)
    assert not thread.is_alive()


def test_the_tick_and_the_status_carry_identity(tmp_path):
    d = make_daemon(tmp_path, identity={"pid": 1, "start_time": 2.5, "socket": "/x"})
    status = d.status()
    assert (status["pid"], status["start_time"], status["socket"]) == (1, 2.5, "/x")


def test_the_status_file_is_written_at_start_and_removed_at_a_clean_exit(tmp_path):
    from numad_py.daemon.statefiles import StatusFile

    (tmp_path / "run").mkdir(exist_ok=True)
    seen = []

    def sense(config):
        seen.append((tmp_path / "run" / "status.json").exists())
        return Script().sense(config)

    d = make_daemon(tmp_path, status_file=StatusFile(tmp_path / "run"))
    d._sense = sense
    assert d.run(once=True) == 0
    assert seen == [True]                         # before the first tick ended
    assert not (tmp_path / "run" / "status.json").exists()


def test_the_status_shows_the_last_twenty_outcomes_oldest_first(tmp_path):
    returned = []

    class RecordingExecutor(FakeExecutor):
        def execute(self, act, **kw):
            returned.append(super().execute(act, **kw))
            return returned[-1]

    d = make_daemon(tmp_path, script=Script(plan_actions=[action(target=frozenset({0}))]),
                    executor=RecordingExecutor())
    for _ in range(25):
        d.tick()
    recent = d.status()["recent"]
    assert len(recent) == 20 and len(returned) == 25
    assert recent == [o.to_dict() for o in returned[-20:]]
    assert [r["when"] for r in recent] == sorted(r["when"] for r in recent)
