"""history.json in state_dir: what the planner remembers survives a restart (issue 11 item 7:
state_dir / StateDirectory= were unused)."""

from __future__ import annotations

import pytest

from daemon_fakes import IDENT, Script, action, make_daemon
from numad_py.daemon.statefiles import HistoryStore


class RecordingScript(Script):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.histories = []

    def decide(self, snapshot, config, history):
        self.histories.append(dict(history))
        return super().decide(snapshot, config, history)


def test_a_restart_remembers_what_was_done(tmp_path):
    store = HistoryStore(tmp_path / "state")
    (tmp_path / "state").mkdir()
    first = make_daemon(tmp_path, script=Script(plan_actions=[action()]), history_store=store)
    first.tick()
    saved = first.state.history[IDENT]
    assert saved.handled_once and saved.last_action is not None

    script = RecordingScript(plan_actions=[action()])
    second = make_daemon(tmp_path, script=script, history_store=HistoryStore(tmp_path / "state"))
    second.tick()
    assert script.histories[0][IDENT] == saved          # the planner saw it on the first tick


def test_last_checked_survives_a_restart_and_older_files_load_without_it(tmp_path):
    from numad_py.decide.history import ProcessHistory
    entry = ProcessHistory(first_seen=1.0, last_action=2.0, last_checked=3.0, handled_once=True)
    HistoryStore(tmp_path).save({IDENT: entry})
    assert HistoryStore(tmp_path).load() == {IDENT: entry}
    text = (tmp_path / "history.json").read_text().replace('"last_checked": 3.0, ', "")
    (tmp_path / "history.json").write_text(text)    # as a daemon before last_checked wrote it
    assert HistoryStore(tmp_path).load() == {IDENT: ProcessHistory(first_seen=1.0, last_action=2.0, handled_once=True)}


def test_a_dry_run_records_nothing_on_disk(tmp_path):
    (tmp_path / "state").mkdir()
    store = HistoryStore(tmp_path / "state")
    make_daemon(tmp_path, script=Script(plan_actions=[action()]), history_store=store, dry_run=True).tick()
    assert not (tmp_path / "state" / "history.json").exists()


def test_a_broken_history_file_is_ignored(tmp_path, caplog):
    (tmp_path / "history.json").write_bytes(b"\xff{not json")
    assert HistoryStore(tmp_path).load() == {}
    assert "ignoring" in caplog.text
    (tmp_path / "history.json").write_text('{"version": 1, "processes": [{"pid": "x"}]}')
    assert HistoryStore(tmp_path).load() == {}


def test_no_state_dir_no_file(tmp_path):
    store = HistoryStore(None)
    store.save({})
    assert not store.enabled and store.load() == {}


def test_an_unchanged_history_is_not_written_again_and_a_failed_write_is_retried(tmp_path, monkeypatch):
    from numad_py.daemon import statefiles
    from numad_py.decide.history import ProcessHistory

    store = HistoryStore(tmp_path)
    history = {IDENT: ProcessHistory(first_seen=1.0)}
    store.save(history)
    (tmp_path / "history.json").unlink()
    store.save(dict(history))                          # equal: nothing written
    assert not (tmp_path / "history.json").exists()

    changed = {IDENT: ProcessHistory(first_seen=1.0, handled_once=True)}

    def full_disk(*_a, **_kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(statefiles, "write_atomic", full_disk)
    with pytest.raises(OSError):
        store.save(changed)
    monkeypatch.undo()
    store.save(changed)                                # the next tick writes it
    assert HistoryStore(tmp_path).load() == changed
