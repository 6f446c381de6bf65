"""[daemon] reload_on_change: the policy files changing is a reload (as SIGHUP), for a
ConfigMap whose files the kubelet swaps through a symlink; a broken file keeps the old rules."""

from __future__ import annotations

import os
import time

from daemon_proc import RunningDaemon, write_config

RULE = '[[rule]]\nname = "{name}"\nmatch.comm = "no-such-process-{name}"\nnodes = "0"\n'


def test_changed_rules_are_reloaded_without_a_signal(tmp_path):
    config = write_config(tmp_path, extra="reload_on_change = true")
    d = RunningDaemon(tmp_path, config=config)
    try:
        d.wait_log(r"numad-py started: 0 rule")
        (tmp_path / "rules.d" / "10-a.toml").write_text(RULE.format(name="a"))
        d.wait_log(r"reloaded: 1 rule")
        # The kubelet's way: a new file, then the link swapped onto it.
        data = tmp_path / "data-2"
        data.mkdir()
        (data / "10-a.toml").write_text(RULE.format(name="a") + RULE.format(name="b"))
        link = tmp_path / "rules.d" / "10-a.toml.new"
        os.symlink(data / "10-a.toml", link)
        os.replace(link, tmp_path / "rules.d" / "10-a.toml")
        d.wait_log(r"reloaded: 2 rule")
        (tmp_path / "rules.d" / "10-a.toml").unlink()
        (tmp_path / "rules.d" / "10-a.toml").write_bytes(b"[[rule]]\nname = \xff\n")
        d.wait_log(r"reload failed, keeping the previous 2 rule")
        assert d.proc.poll() is None
        assert d.log().count("reload failed") == 1   # not once per scan
    finally:
        assert d.stop() == 0


def test_without_the_setting_files_are_not_watched(tmp_path):
    d = RunningDaemon(tmp_path)
    try:
        d.wait_log(r"numad-py started: 0 rule")
        (tmp_path / "rules.d" / "10-a.toml").write_text(RULE.format(name="a"))
        time.sleep(1.0)   # five scans at 200 ms
        assert "reloaded" not in d.log()
    finally:
        assert d.stop() == 0
