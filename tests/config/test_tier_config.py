"""The tier rule and [daemon] damon keys: one line per problem, with file:line."""

from __future__ import annotations

import pytest

from numad_py.config import load_config

from test_config_errors import problems, write

THREE_NODES = frozenset({0, 1, 2})
RULE = '[[rule]]\nname = "t"\nmatch.comm = "app"\n'


def test_a_tier_rule_loads_with_its_defaults(tmp_path):
    path = write(tmp_path, RULE + 'tier = { fast = "0-1", slow = "2", hot_min = "5%" }\n')
    tier = load_config(path, online_nodes=THREE_NODES).rules[0].tier
    assert (tier.fast, tier.slow, tier.cold_after, tier.hot_min, tier.max_slow_share, tier.dwell) == \
        ("0-1", "2", 30.0, 0.05, 0.8, 10.0)


@pytest.mark.parametrize("text, expected", [
    (RULE + 'tier = { fast = "0-1", slow = "1" }\n',
     "numad-py.toml:4: rules[0].tier: fast and slow share node 1"),
    (RULE + 'tier = { fast = "0", slow = "2", hot_min = "150%" }\n',
     "numad-py.toml:4: rules[0].tier.hot_min: must be between 0% and 100%, got '150%'"),
    (RULE + 'tier = { fast = "0", slow = "2", hot_min = "hot" }\n',
     "numad-py.toml:4: rules[0].tier.hot_min: expected a percentage like \"5%\", got 'hot'"),
    (RULE + 'tier = { fast = "0", slow = "7" }\n',
     "numad-py.toml:4: rules[0].tier.slow: node 7 does not exist on this machine"),
    (RULE + 'tier = { fast = "0", slow = "2", colder = "1s" }\n',
     "numad-py.toml:4: rules[0].tier.colder: unknown key 'colder'"),
    (RULE + 'nodes = "1"\ntier = { fast = "0", slow = "2" }\n',
     "rules[0]: a tier rule places by tier.fast and tier.slow: drop nodes and cpus"),
    ('[daemon]\ndamon = { sample = "200ms", aggregate = "100ms" }\n',
     "numad-py.toml:2: daemon.damon: aggregate must be at least sample"),
    ('[daemon]\ndamon = { min_regions = 2 }\n',
     "numad-py.toml:2: daemon.damon.min_regions: "),
])
def test_tier_mistakes_are_one_line_with_file_and_line(tmp_path, text, expected):
    (line,) = problems(write(tmp_path, text), online=THREE_NODES)
    assert expected in line, line
    assert "\n" not in line
