"""The shim-rules publisher: recompiles only when its output may have changed."""

from __future__ import annotations

from numad_py.config import Config, Match, Rule
from numad_py.daemon import publish
from numad_py.daemon.publish import ShimRulesPublisher
from numad_py.shim.gate import gate_path


def spreading() -> Config:
    return Config.model_validate({"rules": [Rule(name="cc", match=Match(comm="cc"), spread_children="0")]})


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_rules_are_compiled_again_only_when_config_files_or_time_say_so(tmp_path, monkeypatch):
    calls = []
    real = publish.publish_shim_rules

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(publish, "publish_shim_rules", counted)
    clock = Clock()
    publisher = ShimRulesPublisher(tmp_path, clock=clock)
    config = spreading()
    publisher(None, config)
    written = publisher.path.read_bytes()
    publisher(None, config)
    assert len(calls) == 1                               # same config, files as left

    publisher.path.write_bytes(b"# edited by someone\n")
    publisher(None, config)
    assert len(calls) == 2 and publisher.path.read_bytes() == written

    gate_path(publisher.path).unlink()
    publisher(None, config)
    assert len(calls) == 3 and gate_path(publisher.path).exists()

    reloaded = spreading()                               # a reload: a new config object
    publisher(None, reloaded)
    assert len(calls) == 4

    clock.now += ShimRulesPublisher.REPUBLISH_AFTER      # a user a rule names may exist by now
    publisher(None, reloaded)
    assert len(calls) == 5
