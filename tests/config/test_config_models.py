"""The shipped defaults, the loaded Config's shape, units."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from numad_py.config import Config, Rule, load_config, parse_duration, parse_size
from numad_py.config.models import DaemonSettings, Match
from numad_py.units import MAX_DURATION

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "etc/numad-py/numad-py.toml"


def test_shipped_defaults_load_cleanly_on_a_one_node_machine():
    config = load_config(SHIPPED, online_nodes=frozenset({0}))
    assert config.daemon == DaemonSettings()  # the file shows the defaults, nothing else
    assert config.metrics.listen == "127.0.0.1:9816"
    assert config.control.socket == "/run/numad-py/control.sock"
    assert [r.name for r in config.rules] == ["advise-large"]
    assert config.files[0] == str(SHIPPED)


def test_shipped_examples_are_valid_once_uncommented(tmp_path):
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "numad-py.toml").write_text("")
    for example in sorted((REPO / "etc/numad-py/rules.d").glob("*.toml")):
        uncommented = re.sub(r"^# ?(\[\[rule\]\]|\w+(\.\w+)? = .*)$", r"\1", example.read_text(), flags=re.M)
        (tmp_path / "rules.d" / example.name).write_text(uncommented)
    config = load_config(tmp_path / "numad-py.toml", online_nodes=frozenset(range(4)))
    assert [r.name for r in config.rules] == ["postgres", "nginx", "analytics", "advise-large"]


def test_rules_know_their_file_and_index_and_get_default_names(tmp_path):
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "numad-py.toml").write_text("")
    (tmp_path / "rules.d" / "10-db.toml").write_text(
        '[[rule]]\nmatch.comm = "a"\nnodes = "0"\n[[rule]]\nname = "b"\nmatch.comm = "b"\nnodes = "all"\n'
    )
    (tmp_path / "rules.d" / "ignored.conf").write_text("not toml")
    config = load_config(tmp_path / "numad-py.toml", online_nodes=frozenset({0, 1}))
    first, second = config.rules
    assert (first.name, first.source, first.index) == ("10-db[0]", str(tmp_path / "rules.d/10-db.toml"), 0)
    assert (second.name, second.index) == ("b", 1)
    assert second.target_nodes({0, 1}) == {0, 1}


def test_rule_values_are_normalised():
    rule = Rule.model_validate(
        {"match": {"comm": "x", "min_rss": "1GiB"}, "nodes": " 0-1, 3", "every": "500ms", "memory": ["[heap]"]},
        context={"online_nodes": frozenset(range(4))},
    )
    assert rule.nodes == "0-1,3"
    assert rule.every == 0.5
    assert rule.match.min_rss == 1 << 30
    assert rule.target_nodes(range(4)) == {0, 1, 3}
    assert Rule(match=Match(comm="x")).target_nodes({0}) is None  # default nodes = "auto"


def test_every_field_has_a_description():
    from numad_py.config.models import ControlSettings, MetricsSettings

    for model in (DaemonSettings, MetricsSettings, ControlSettings, Match, Rule, Config):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"


@pytest.mark.parametrize(
    "text, seconds",
    [("500ms", 0.5), ("10s", 10), ("5m", 300), ("1h", 3600), ("1.5s", 1.5), (" 2s ", 2)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "10", "s", "-1s", "1d", "10 sec", 10, None, True, "1e3s"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    "value, nbytes",
    [(0, 0), (4096, 4096), ("4096", 4096), ("64KiB", 65536), ("512MiB", 512 << 20), ("1GiB", 1 << 30), ("2B", 2)],
)
def test_sizes(value, nbytes):
    assert parse_size(value) == nbytes


@pytest.mark.parametrize("bad", ["", "1GB", "1.5GiB", "-1", -1, True, None, "lots", 1.0])
def test_bad_sizes(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["ms", "s", "m", "h"]))
def test_duration_roundtrip_scale(number, unit):
    seconds = number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    if seconds <= MAX_DURATION:
        assert parse_duration(f"{number}{unit}") == seconds
    else:
        with pytest.raises(ValueError, match="longer than a year"):
            parse_duration(f"{number}{unit}")


@given(st.text(max_size=12))
def test_duration_parser_never_crashes_on_garbage(text):
    try:
        assert parse_duration(text) >= 0
    except ValueError:
        pass


# --- upper bounds (issue 18 item 11) and one listen parser (issue 11 item 6) ------

@pytest.mark.parametrize("field, value, ok", [
    ("scan_interval", "24h", True), ("scan_interval", "1441m", False), ("scan_interval", "3000000h", False),
    ("max_stall", "10s", True), ("max_stall", "11s", False),
    ("cooldown", "168h", True), ("cooldown", "169h", False),
    ("budget", "1TiB", True), ("budget", "2TiB", False),
])
def test_daemon_settings_have_upper_bounds(field, value, ok):
    if ok:
        DaemonSettings.model_validate({field: value})
    else:
        with pytest.raises(ValueError, match="at most|longer than a year"):
            DaemonSettings.model_validate({field: value})


def test_rule_every_is_bounded():
    Rule.model_validate({"match": {"comm": "x"}, "nodes": "0", "every": "168h"})
    with pytest.raises(ValueError, match="at most 7d"):
        Rule.model_validate({"match": {"comm": "x"}, "nodes": "0", "every": "169h"})


LISTENS = ["127.0.0.1:9816", "[::1]:9816", "::1:9816", "localhost:80", "9816", ":9816", "",
           "[127.0.0.1]:1", "host:65536", "host:２", "a b:1", "[::1]9816", "[zz]:1"]


@pytest.mark.parametrize("listen", LISTENS)
def test_check_config_and_the_daemon_agree_on_listen(listen):
    from numad_py.config.models import MetricsSettings
    from numad_py.metrics import parse_listen   # what the daemon binds with

    try:
        parse_listen(listen)
        daemon_ok = True
    except ValueError:
        daemon_ok = False
    try:
        MetricsSettings.model_validate({"listen": listen})
        config_ok = True
    except ValueError:
        config_ok = False
    assert config_ok == daemon_ok
    assert config_ok == (listen not in ("::1:9816", "[127.0.0.1]:1", "host:65536", "host:２", "a b:1",
                                        "[::1]9816", "[zz]:1"))


def test_deeply_nested_regex_is_refused_whatever_the_recursion_limit():
    # sre compiles 500 nested groups under a high recursion limit and fails under
    # the default one: the config must not depend on the stack of whoever loads it.
    import sys

    deep = "(" * 500 + "a" + ")" * 500
    old = sys.getrecursionlimit()
    try:
        for limit in (1000, 10000):
            sys.setrecursionlimit(limit)
            with pytest.raises(ValueError, match="nested more than 100 deep"):
                Match.model_validate({"comm": deep})
    finally:
        sys.setrecursionlimit(old)
    assert Match.model_validate({"comm": "(" * 100 + "a" + ")" * 100}).comm
