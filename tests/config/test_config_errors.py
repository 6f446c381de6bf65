"""Golden error lines: FILE:LINE: path: message, one per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from numad_py.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
TWO_NODES = frozenset({0, 1})


def write(tmp_path: Path, main: str, rules: dict[str, str] | None = None) -> Path:
    path = tmp_path / "numad-py.toml"
    path.write_text(main)
    for name, text in (rules or {}).items():
        (tmp_path / "rules.d").mkdir(exist_ok=True)
        (tmp_path / "rules.d" / name).write_text(text)
    return path


def problems(path: Path, online=TWO_NODES) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, online_nodes=online)
    root = str(path.parent) + "/"
    return [str(p).replace(root, "") for p in info.value.problems]


CASES = [
    (
        "unknown key",
        "[daemon]\nscan_interval = \"5s\"\nscan_intervall = \"5s\"\n",
        ["numad-py.toml:3: daemon.scan_intervall: unknown key 'scan_intervall' (did you mean 'scan_interval'?)"],
    ),
    (
        "unknown table",
        "[deamon]\n",
        ["numad-py.toml:1: deamon: unknown key 'deamon' (did you mean 'daemon'?)"],
    ),
    (
        "bad regex",
        "[[rule]]\nname = \"db\"\nmatch.comm = \"post(gres\"\nnodes = \"1\"\n",
        ["numad-py.toml:3: rules[0].match.comm: bad regex 'post(gres': missing ), unterminated subpattern at position 4"],
    ),
    (
        "bad duration",
        "[daemon]\n\nscan_interval = \"10 parsecs\"\n",
        ["numad-py.toml:3: daemon.scan_interval: bad duration '10 parsecs': expected a number and a unit (ms, s, m, h), e.g. \"10s\""],
    ),
    (
        "duration without unit",
        "[[rule]]\nmatch.comm = \"x\"\nnodes = \"0\"\nevery = 30\n",
        ["numad-py.toml:4: rules[0].every: expected a duration string like \"500ms\", \"10s\", \"5m\" or \"1h\", got 30"],
    ),
    (
        "bad node list",
        "[[rule]]\nmatch.comm = \"x\"\nnodes = \"0-\"\n",
        ["numad-py.toml:3: rules[0].nodes: '' is not a node number in '0-' (expected e.g. '0-3,5' or 'all')"],
    ),
    (
        "node that does not exist",
        "[[rule]]\nmatch.comm = \"a\"\nnodes = \"0\"\n\n[[rule]]\nmatch.comm = \"b\"\nnodes = \"1,3\"\n",
        ["numad-py.toml:7: rules[1].nodes: node 3 does not exist on this machine (online nodes: 0-1; a rule shared by machines of other shapes says fleet = true)"],
    ),
    (
        "toml syntax error",
        "[daemon]\nscan_interval = \n",
        ["numad-py.toml:2: syntax: Invalid value (column 17)"],
    ),
    (
        "wrong type",
        "[[rule]]\nmatch.comm = \"x\"\nnodes = \"0\"\ncpus = \"yes\"\n",
        ["numad-py.toml:4: rules[0].cpus: input should be a valid boolean, got 'yes'"],
    ),
    (
        "bad memory selector",
        "[[rule]]\nmatch.comm = \"x\"\nnodes = \"0\"\nmemory = [\"[heap]\", \"heap\"]\n",
        ["numad-py.toml:4: rules[0].memory: unknown memory selector 'heap': expected \"[heap]\", \"[stack]\", "
         "\"anon\", an absolute path or glob (\"/dev/shm/*\"), or a range \"0x1000-0x2000\""],
    ),
    (
        "backwards address range",
        "[[rule]]\nmatch.comm = \"x\"\nnodes = \"0\"\nmemory = [\"0x2000-0x1000\"]\n",
        ["numad-py.toml:4: rules[0].memory: bad address range '0x2000-0x1000': end must be above start"],
    ),
    (
        "rule without criteria",
        "[[rule]]\nname = \"everything\"\nnodes = \"0\"\n",
        ["numad-py.toml:1: rules[0]: match needs at least one of comm, exe, cmdline, user, cgroup, unit, min_rss"],
    ),
    (
        "rule that never acts",
        "[[rule]]\nmatch.comm = \"x\"\nnodes = \"0\"\nonce = false\n",
        ["numad-py.toml:1: rules[0]: the rule would never act: keep once = true or set every"],
    ),
    (
        "auto flag on explicit nodes",
        "[[rule]]\nmatch.comm = \"x\"\nnodes = \"0\"\nauto = true\n",
        ["numad-py.toml:1: rules[0]: auto = true only applies to nodes = \"auto\""],
    ),
    (
        "inline table unknown key",
        "[[rule]]\nmatch = { comm = \"x\", usr = \"bob\" }\n",
        ["numad-py.toml:2: rules[0].match.usr: unknown key 'usr' (did you mean 'user'?)"],
    ),
    (
        "sub-table header",
        "[[rule]]\nnodes = \"0\"\n[rule.match]\ncomm = \"x\"\nexe = \"[\"\n",
        ["numad-py.toml:5: rules[0].match.exe: bad regex '[': unterminated character set at position 0"],
    ),
    (
        "bad size and listen",
        "[daemon]\nbudget = \"1 GB\"\n[metrics]\nlisten = \"::1:9816\"\n",
        [
            "numad-py.toml:2: daemon.budget: bad size '1 GB': expected bytes or a number with KiB, MiB, GiB or TiB, e.g. \"512MiB\"",
            "numad-py.toml:4: metrics.listen: metrics listen address '::1:9816': put an IPv6 address in brackets, "
            "e.g. [::1]:9816 (expected HOST:PORT, [IPV6]:PORT or \"\" to disable, e.g. '127.0.0.1:9816')",
        ],
    ),
    (
        "spread_children cannot be auto",
        "[[rule]]\nmatch.comm = \"x\"\nspread_children = \"auto\"\n",
        ["numad-py.toml:3: rules[0].spread_children: 'auto' is not allowed here: give a node list like '0-3,5' or 'all'"],
    ),
]


@pytest.mark.parametrize("main, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_goldens(tmp_path, main, expected):
    assert problems(write(tmp_path, main)) == expected


def test_rule_index_is_per_file_and_all_files_report(tmp_path):
    path = write(
        tmp_path,
        "[[rule]]\nmatch.comm = \"a\"\nnodes = \"0\"\n",
        {
            "20-b.toml": "[[rule]]\nmatch.comm = \"b\"\nnodes = \"0\"\n\n[[rule]]\nmatch.comm = \"c\"\nnodes = \"9\"\n",
            "10-a.toml": "[daemon]\nauto = true\n",
        },
    )
    assert problems(path) == [
        "rules.d/10-a.toml:1: daemon: unknown key 'daemon' (rules.d files hold only [[rule]] tables)",
        "rules.d/20-b.toml:7: rules[1].nodes: node 9 does not exist on this machine (online nodes: 0-1; a rule shared by machines of other shapes says fleet = true)",
    ]


def test_duplicate_rule_names(tmp_path):
    path = write(
        tmp_path,
        "[[rule]]\nname = \"db\"\nmatch.comm = \"a\"\nnodes = \"0\"\n",
        {"10-a.toml": "[[rule]]\nmatch.comm = \"b\"\nname = \"db\"\nnodes = \"1\"\n"},
    )
    assert problems(path) == [
        "rules.d/10-a.toml:3: rules[0].name: rule name 'db' is already used by rules[0] in numad-py.toml"
    ]


def test_missing_main_file(tmp_path):
    assert problems(tmp_path / "numad-py.toml") == ["numad-py.toml:1: file: cannot read: No such file or directory"]


def test_unknown_nodes_pass_when_the_machine_is_unknown(tmp_path):
    path = write(tmp_path, "[[rule]]\nmatch.comm = \"x\"\nnodes = \"7\"\n")
    assert load_config(path, online_nodes=None).rules[0].nodes == "7"
