"""The shim's rules file: the daemon's policy names the programs whose children are placed.

Host tests (one node): encoding, the regex -> glob conversion checked against
the C library's fnmatch(3) (what the shim calls), and real programs loading the
shim with NO NUMAD_SHIM_* configuration, matched by their comm (a script's comm
is its file name).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import stat
import subprocess
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numad_py.config.models import Rule
from numad_py.shim import (
    RULES_HEADER, RULES_MAX_RULES, NotExpressible, compile_shim_rules, encode_shim_rules,
    publish_shim_rules, read_stats, regex_to_globs,
)
from numad_py.topology import read_topology

from shim_helpers import PY, REPO, named_program, rules_env, run_workload

NODE0 = min(read_topology().memory_nodes)
PREFERRED0 = {"mode": "preferred", "nodes": [NODE0]}
DEFAULT = {"mode": "default", "nodes": []}


def rule(**kw) -> Rule:
    return Rule.model_validate(kw)


def rule_line(comm_glob: str, action: str = "spread", nodes: str = str(NODE0), mode: str = "preferred",
              cpus: str = "0", exe: str = "", uid: str = "-", name: str = "t") -> str:
    return "\t".join(["rule", name, comm_glob, exe, uid, action, nodes, mode, cpus])


def write_rules(path, *lines: str, header: str = RULES_HEADER):
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


# --- regex -> glob conversion ------------------------------------------------------

_libc = ctypes.CDLL(None)
_libc.fnmatch.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]


def shim_matches(globs: list[str], subject: str) -> bool:
    """As the shim decides: fnmatch(3) with no flags, any glob of the rule's lines."""
    return any(_libc.fnmatch(g.encode(), subject.encode(), 0) == 0 for g in globs)


SUBJECTS = ["", "make", "gmake", "make2", "cc", "gcc", "g++", "python3", "python3.11", "python3x11",
            "python", "a", "aa", "ab", "a.b", "axb", "a/b", "]", "^", "-", "a-b", "foo bar", "{x}", "*", "?",
            "[x]", "a|b", "\\", "_x9", "kworker/0:1", "kworker/", "12", "1a", "x1", "X1", "nginx: worker",
            "postgres", "postmaster", "java", "/usr/bin/python3", "/usr/bin/", "/usr/local/bin/x", "a*b"]

EXPRESSIBLE = [
    "make", "gcc|cc", "python3\\.11", "python3.11", "kworker/.*", "^make$", "\\Ajava\\Z", ".", ".+",
    "a.*?b", "a.+b", "[a-z][0-9]", "[^0-9]1", "[A-Z_.]1", "nginx: .*", "/usr/bin/.*", "a\\*b", "a\\?",
    "\\[x\\]", "\\\\", "postgres|postmaster", "a\\-b", "\\^|\\]", "g?make", "/usr/s?bin/python3", "a.?",
    "make[0-9]?", "python3\\.?11|cc", "x1??",
]


@pytest.mark.parametrize("pattern", EXPRESSIBLE)
def test_globs_match_what_the_regex_fullmatches(pattern):
    globs = regex_to_globs(pattern)
    for s in SUBJECTS:
        assert shim_matches(globs, s) == bool(re.fullmatch(pattern, s)), (pattern, globs, s)


@pytest.mark.parametrize("pattern", [
    "python3(\\.\\d+)?", "[a-z]+-worker", "a{2,3}", "(?i)make", "foo(?=bar)", "\\bmake",
    "(a)\\1", "\\d+", "a\\sb", "caf\u00e9", "a\\tb", "a|", "[]a]", "[a-]", "[\\w]", "[a|b]", "a?", ".?", "a?b?c?d?e?", "a?+",
    "x^y", "a$b", "", "|".join(f"p{i}" for i in range(17)),
])
def test_not_expressible_is_refused(pattern):
    with pytest.raises(NotExpressible):
        regex_to_globs(pattern)


# --- encoding ------------------------------------------------------------------------

def test_encode_keeps_order_and_first_match_wins():
    rules = [
        rule(name="db", match={"comm": "postgres"}, nodes="0"),                      # claims postgres
        rule(name="builds", match={"comm": "make|ninja"}, spread_children="0-3", cpus=True),
        rule(name="tail", match={"comm": "java"}, nodes="1"),                        # after the last spread
    ]
    text = encode_shim_rules(rules, exclude=["systemd.*"], table_path="/run/x/node-table")
    lines = text.splitlines()
    assert lines[0] == RULES_HEADER and lines[1].startswith("#")
    body = [line.split("\t") for line in lines[2:]]
    assert body[0] == ["table", "/run/x/node-table"]
    assert body[1] == ["rule", "daemon.exclude[0]", "systemd*", "", "-", "none", "-", "preferred", "0"]
    assert body[2] == ["rule", "db", "postgres", "", "-", "none", "-", "preferred", "0"]
    assert body[3] == ["rule", "builds", "make", "", "-", "spread", "0-3", "preferred", "1"]
    assert body[4] == ["rule", "builds", "ninja", "", "-", "spread", "0-3", "preferred", "1"]
    assert len(body) == 5                                        # "tail" changes nothing
    assert text.endswith("\n")


def test_encode_without_spreading_rules_is_empty():
    text = encode_shim_rules([rule(match={"comm": "x"}, nodes="0")], exclude=["y"], include=["z"])
    assert text.splitlines()[0] == RULES_HEADER
    assert not [line for line in text.splitlines() if line.startswith(("rule", "include"))]


def test_criteria_the_shim_cannot_check():
    rules = [
        rule(name="cg-only", match={"cgroup": "/system.slice/*"}, nodes="0"),          # left out
        rule(name="big-java", match={"comm": "java", "min_rss": "1GiB"}, nodes="0"),   # none over comm
        rule(name="spread-cg", match={"comm": "make", "unit": "ci.service"}, spread_children="1"),
        rule(name="by-user", match={"user": 0, "exe": "/usr/bin/.*"}, spread_children="all"),
        rule(name="nobody-known", match={"user": "no-such-user-xyz", "comm": "a"}, spread_children="1"),
        rule(name="lookahead", match={"comm": "x(?=y)"}, spread_children="1"),
        rule(name="ok", match={"comm": "cc"}, spread_children="1"),
    ]
    c = compile_shim_rules(rules)
    names = {line.name: line for line in c.lines}
    assert "cg-only" not in names and "nobody-known" not in names and "lookahead" not in names
    assert names["big-java"].action == "none" and names["big-java"].comm == "java"
    assert names["spread-cg"].action == "none"
    assert names["by-user"].action == "spread" and names["by-user"].uid == 0
    assert names["by-user"].nodes == "all" and names["by-user"].exe == "/usr/bin/*"
    assert names["ok"].action == "spread"
    problems = dict(c.problems)
    assert set(problems) == {"cg-only", "big-java", "spread-cg", "nobody-known", "lookahead"}
    assert c.placing == 2


def test_shipped_nginx_example_reaches_the_shim():
    """etc/numad-py/rules.d/20-web.toml, uncommented: its exe regex has an optional 's'."""
    text = (REPO / "etc/numad-py/rules.d/20-web.toml").read_text()
    body = "\n".join(line.removeprefix("# ") for line in text.splitlines() if line.startswith("# ") and "=" in line
                     or line.startswith("# [[rule]]"))
    (example,) = tomllib.loads(body)["rule"]
    c = compile_shim_rules([Rule.model_validate(example)])
    assert [(line.exe, line.uid, line.action, line.nodes) for line in c.lines] == [
        ("/usr/bin/nginx", 0, "spread", "all"), ("/usr/sbin/nginx", 0, "spread", "all")]
    assert c.problems == []


def test_cmdline_rule_is_never_written_as_spreading():
    c = compile_shim_rules([rule(name="py", match={"comm": "python3", "cmdline": ".*serve.*"}, spread_children="1"),
                            rule(name="ok", match={"comm": "cc"}, spread_children="1")])
    assert [(line.name, line.action) for line in c.lines] == [("py", "none"), ("ok", "spread")]
    assert "cannot check cmdline" in dict(c.problems)["py"]


def test_inexpressible_exclude_disables_spreading():
    c = compile_shim_rules([rule(match={"comm": "cc"}, spread_children="1")], exclude=["(?i)x"])
    assert c.lines == [] and c.problems


def test_include_patterns():
    c = compile_shim_rules([rule(match={"comm": "cc"}, spread_children="1")], include=["cc|ld", "\\bq"])
    assert c.includes == ["cc", "ld"] and len(c.problems) == 1
    assert compile_shim_rules([rule(match={"comm": "cc"}, spread_children="1")], include=["\\bq"]).lines == []


def test_too_many_rules_are_cut_to_the_limit():
    rules = [rule(name=f"r{i}", match={"comm": f"p{i}"}, spread_children="0") for i in range(RULES_MAX_RULES + 5)]
    c = compile_shim_rules(rules)
    assert len(c.lines) == RULES_MAX_RULES and c.problems


def test_publish_atomic_mode_and_unchanged(tmp_path, caplog):
    path = tmp_path / "run" / "shim-rules"
    rules = [rule(match={"comm": "cc"}, spread_children="0"), rule(match={"cgroup": "/x"}, spread_children="0")]
    with caplog.at_level("WARNING"):
        assert publish_shim_rules(path, rules) == 1
        assert publish_shim_rules(path, rules) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sum("cannot check cgroup" in r.getMessage() for r in caplog.records) == 1   # once
    ino = path.stat().st_ino
    assert publish_shim_rules(path, rules) == 1
    assert path.stat().st_ino == ino                          # unchanged: not rewritten
    assert publish_shim_rules(path, rules[:1] + [rule(match={"comm": "ld"}, spread_children="0")]) == 2
    assert path.stat().st_ino != ino                          # replaced by rename
    assert sorted(p.name for p in path.parent.iterdir()) == ["shim-rules", "shim-rules.gate"]  # no temp left


# --- the shim reading the file ---------------------------------------------------------

def basic(program, env):
    (rec,) = run_workload(["basic"], env, program=program)
    return rec


def test_matching_program_places_its_children(tmp_path):
    rules = write_rules(tmp_path / "rules", rule_line("other", "none"), rule_line("spread[m]e"))
    stats = tmp_path / "stats"
    rec = basic(named_program(tmp_path, "spreadme"), rules_env(rules, stats=stats))
    assert rec["before"] == DEFAULT and rec["after"] == DEFAULT          # the program itself: untouched
    for how, pol in rec["children"].items():
        if how != "system_status":
            assert pol == PREFERRED0, how
    assert rec["children"]["system_status"] == 3
    s = read_stats(stats)
    assert s["rules_matched"] == 1 and s["placed"] >= 6 and s["fallback"] == 0 and s["rules_invalid"] == 0, s


def test_published_by_the_daemon_code_path(tmp_path):
    path = tmp_path / "shim-rules"
    assert publish_shim_rules(path, [rule(name="me", match={"comm": "spread-me"}, spread_children=str(NODE0))]) == 1
    rec = basic(named_program(tmp_path, "spread-me"), rules_env(path))
    assert rec["children"]["os.fork"] == PREFERRED0


def test_non_matching_program_is_untouched(tmp_path):
    rules = write_rules(tmp_path / "rules", rule_line("spreadme"))
    stats = tmp_path / "stats"
    rec = basic(named_program(tmp_path, "otherprog"), rules_env(rules, stats=stats))
    assert all(pol == DEFAULT for how, pol in rec["children"].items() if how != "system_status")
    s = read_stats(stats)
    assert s["placed"] == 0 and s["calls"] == 0 and s["rules_matched"] == 0 and s["rules_invalid"] == 0, s


def test_none_line_stops_the_search(tmp_path):
    rules = write_rules(tmp_path / "rules", rule_line("spread*", "none"), rule_line("spreadme"))
    rec = basic(named_program(tmp_path, "spreadme"), rules_env(rules))
    assert rec["children"]["os.fork"] == DEFAULT


def probe_state(tmp_path, name, env) -> dict:
    (tmp_path / "probes").mkdir(exist_ok=True)   # not to overwrite a workload program of that name
    prog = named_program(tmp_path / "probes", name, "import json; from numad_py.shim import process_stats; "
                                         "print(json.dumps(process_stats()))\n")
    out = subprocess.run([str(prog)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_rule_mode_cpus_exe_uid_and_state(tmp_path):
    exe = os.path.realpath(PY)
    assert not set(exe) & set("*?[\\")                       # a literal glob
    rules = write_rules(
        tmp_path / "rules",
        rule_line("", exe=exe, uid=str(os.getuid() + 1), name="other-uid"),
        rule_line("probe", exe="/nonexistent", name="other-exe"),
        rule_line("", exe=exe, uid=str(os.getuid()), mode="bind", cpus="1", name="mine"),
    )
    st = probe_state(tmp_path, "probe", rules_env(rules))
    assert st["state"] == 1 and st["rule"] == 2 and st["rules_matched"] == 1
    rec = basic(named_program(tmp_path, "anyname"), rules_env(rules))
    assert rec["children"]["os.fork"] == {"mode": "bind", "nodes": [NODE0]}


def test_include_line_filters(tmp_path):
    rules = write_rules(tmp_path / "rules", "include\tcc", "include\tprobe[2]", rule_line(""))
    assert probe_state(tmp_path, "probe", rules_env(rules))["rule"] == -4
    assert probe_state(tmp_path, "probe2", rules_env(rules))["rule"] == 0


def test_env_overrides_the_rules_file(tmp_path):
    rules = write_rules(tmp_path / "rules", rule_line("spreadme", mode="bind"))
    prog = named_program(tmp_path, "spreadme")
    assert basic(prog, rules_env(rules))["children"]["os.fork"] == {"mode": "bind", "nodes": [NODE0]}
    env = rules_env(rules, extra={"NUMAD_SHIM_STRATEGY": "fixed", "NUMAD_SHIM_NODES": str(NODE0)})
    assert basic(prog, env)["children"]["os.fork"] == PREFERRED0        # env: preferred wins
    assert probe_state(tmp_path, "spreadme", env)["rule"] == -5
    env = rules_env(rules, extra={"NUMAD_SHIM_DISABLE": "1"})
    assert basic(prog, env)["children"]["os.fork"] == DEFAULT


def test_no_rules_file_is_dormant(tmp_path):
    stats = tmp_path / "stats"
    env = rules_env(tmp_path / "missing", stats=stats)
    rec = basic(named_program(tmp_path, "spreadme"), env)
    assert rec["children"]["os.fork"] == DEFAULT
    assert probe_state(tmp_path, "spreadme", env)["rule"] == -1
    assert read_stats(stats)["rules_invalid"] == 0


def test_least_loaded_rule_uses_the_files_table(tmp_path):
    from numad_py.shim import publish_node_table
    table = tmp_path / "node-table"
    publish_node_table(table, {NODE0: 1 << 30}, valid_for=600)
    rules = write_rules(tmp_path / "rules", f"table\t{table}", rule_line("spreadme", "least-loaded"))
    stats = tmp_path / "stats"
    rec = basic(named_program(tmp_path, "spreadme"), rules_env(rules, stats=stats))
    assert rec["children"]["os.fork"] == PREFERRED0
    assert read_stats(stats)["fallback_no_table"] == 0


GOOD = rule_line("spreadme")


@pytest.mark.parametrize("case,content", [
    ("bad header", f"numad-py-shim-rules 3\n{GOOD}\n"),
    ("no header", f"{GOOD}\n"),
    ("empty", ""),
    ("unterminated", f"{RULES_HEADER}\n{GOOD}"),
    ("oversized", f"{RULES_HEADER}\n" + ("#" * 1000 + "\n") * 70 + f"{GOOD}\n"),
    ("long line", f"{RULES_HEADER}\n" + "#" * 1100 + f"\n{GOOD}\n"),
    ("too many rules", f"{RULES_HEADER}\n" + f"{rule_line('x')}\n" * RULES_MAX_RULES + f"{GOOD}\n"),
    ("unknown action", f"{RULES_HEADER}\n{rule_line('spreadme', 'scatter')}\n"),
    ("bad nodes", f"{RULES_HEADER}\n{rule_line('spreadme', nodes='1-')}\n"),
    ("bad mode", f"{RULES_HEADER}\n{rule_line('spreadme', mode='local')}\n"),
    ("bad cpus", f"{RULES_HEADER}\n{rule_line('spreadme', cpus='yes')}\n"),
    ("bad uid", f"{RULES_HEADER}\n{rule_line('spreadme', uid='root')}\n"),
    ("few fields", f"{RULES_HEADER}\nrule\tx\t^(spreadme)$\tspread\n"),
    ("unknown kind", f"{RULES_HEADER}\nfrobnicate\tx\n{GOOD}\n"),
    ("v1 (regex) file", f"numad-py-shim-rules 1\n{rule_line('^(spreadme)$')}\n"),
    ("nul byte", f"{RULES_HEADER}\n\0\n{GOOD}\n"),
])
def test_malformed_rules_file_falls_back_and_counts(tmp_path, case, content):
    path = tmp_path / "rules"
    path.write_bytes(content.encode())
    stats = tmp_path / "stats"
    env = rules_env(path, stats=stats)
    rec = basic(named_program(tmp_path, "spreadme"), env)
    assert all(pol == DEFAULT for how, pol in rec["children"].items() if how != "system_status"), case
    assert rec["children"]["system_status"] == 3
    s = read_stats(stats)
    # every process that loaded the shim (the program and its exec'd probes) counted it once
    assert s["rules_invalid"] >= 1 and s["rules_matched"] == 0 and s["placed"] == 0, (case, s)
    assert probe_state(tmp_path, "spreadme", env)["rule"] == -2


def test_fixed_rule_with_several_nodes_is_a_counted_config_fallback(tmp_path):
    rules = write_rules(tmp_path / "rules", rule_line("spreadme", "fixed", nodes=f"{NODE0},{NODE0 + 1}"))
    stats = tmp_path / "stats"
    rec = basic(named_program(tmp_path, "spreadme"), rules_env(rules, stats=stats))
    assert rec["children"]["os.fork"] == DEFAULT
    s = read_stats(stats)
    assert s["fallback_config"] >= 6 and s["placed"] == 0, s


_TOKENS = ["a", "b", "/", " ", ".", ".*", ".+", "[a-b]", "[^b]", "\\.", "\\*", "\\?", "\\[", "\\\\",
           "a?", "[^a]?", "\\.?", ".?"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=5), min_size=1, max_size=3),
       st.lists(st.text(alphabet="ab/ .*?[\\", max_size=6), min_size=1, max_size=20))
def test_any_pattern_of_the_subset_agrees(alternatives, subjects):
    pattern = "|".join("".join(tokens) for tokens in alternatives)
    try:
        globs = regex_to_globs(pattern)
    except NotExpressible as exc:    # only the bounds may refuse a pattern of the subset
        assert "empty name" in str(exc) or "more than" in str(exc), (pattern, exc)
        return
    for s in subjects:
        assert shim_matches(globs, s) == bool(re.fullmatch(pattern, s)), (pattern, globs, s)
