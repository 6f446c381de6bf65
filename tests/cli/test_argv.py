"""numad-py's own parser (numad_py/cli/argv.py) against argparse, on the real commands.

Every command's argument function is given both an ``argparse.ArgumentParser`` and
ours; for each command line, both must agree: the same values, or both a usage
error (exit 2), or both help (exit 0).  argparse is the reference the parser
replaces (issue 17: it costs ~10 ms of start-up)."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from numad_py.cli import argv as ours
from numad_py.cli.entry import COMMANDS, build_parser


def reference_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="numad-py")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, add_arguments in COMMANDS:
        add_arguments(sub.add_parser(name, help=help_text))
    return parser


def outcome(parser, argv: list[str]) -> tuple[str, object]:
    """("ok", the values) or ("exit", code), quietly."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            values = vars(parser.parse_args(argv))
        except SystemExit as exc:
            return "exit", exc.code
    return "ok", {k: (v.__qualname__ if callable(v) else v) for k, v in values.items()}


CASES = [
    ["topology"], ["topology", "--json"],
    ["show", "12"], ["show", "12", "--json", "--maps"], ["show", "--range", "1000-2000", "12"],
    ["show", "--range=1000-2000", "12"], ["show", "12", "--range", "1-2", "--maps"], ["show"],
    ["show", "12", "13"], ["show", "-1"], ["show", "12", "--range"], ["show", "12", "--json=yes"],
    ["migrate", "12", "--to", "1"], ["migrate", "12", "--to", "0-1", "--batch", "512", "--all", "--json"],
    ["migrate", "12", "--batch", "x"], ["migrate", "12", "--batch", "１２"], ["migrate", "12", "--mapping", "[heap]"],
    ["migrate", "12", "--mapping", "anon", "--range", "1-2"], ["migrate", "12", "--via-daemon", "--socket", "/s"],
    ["migrate", "12", "--policy", "interleave 0-1"], ["migrate", "--to", "-", "12"],
    ["drain", "--node", "1"], ["drain"], ["drain", "--node", "1", "--to", "0", "--all", "--no-progress"],
    ["exec", "--node", "1", "--", "sleep", "1"], ["exec", "--node", "1", "sleep", "--x", "-y"],
    ["exec", "--bind", "0-1", "--cpus", "--", "true"], ["exec", "--node", "1", "--spread", "0-1", "true"],
    ["exec", "true"], ["exec", "--local", "--home-node", "1", "--", "a", "--", "b"],
    ["weights"], ["weights", "--set", "0:3,1:1"], ["advise", "--cpus", "2", "--memory", "512MiB"],
    ["advise"], ["shim-path"], ["shim", "install-system", "--root", "/tmp/r"], ["shim", "uninstall-system"],
    ["shim"], ["shim", "frob"], ["run", "--once", "--dry-run", "-v"], ["run", "--config", "/x.toml"],
    ["check-config"], ["check-config", "/x.toml"], ["check-config", "--config", "/x.toml"],
    ["plan", "--json"], ["status"], ["status", "--socket", "/s", "--runtime-dir", "/r", "--json"],
    ["status", "--bogus"], ["frob"], [], ["--help"], ["show", "--help"], ["exec", "-h"],
    ["shim", "install-system", "-h"], ["status", "--json", "--", "x"],
    ["show", "12", "--range", "1-2", "--range", "3-4"], ["show", "12", "--json", "--json"],
    ["migrate", "12", "--to", "0", "--to", "1"], ["status", "--socket"], ["show", "--", "12"],
    ["exec", "--node", "1", "--", "--", "x"], ["drain", "--node=1", "--to=0"],
]


@pytest.mark.parametrize("argv", CASES, ids=" ".join)
def test_same_outcome_as_argparse(argv):
    assert outcome(build_parser(), argv) == outcome(reference_parser(), argv)


def test_usage_errors_name_the_argument_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["show", "12", "--range", "1-2", "--maps"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: numad-py show ")
    assert err.rstrip().endswith("numad-py show: error: argument --maps: not allowed with argument --range")


def test_help_lists_every_command_and_option(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(f"    {name} " in out for name, _h, _a in COMMANDS)
    with pytest.raises(SystemExit):
        build_parser(only="migrate").parse_args(["migrate", "--help"])
    out = capsys.readouterr().out
    for option in ("--to NODES", "--batch PAGES", "--via-daemon", "--range START-END", "--mapping NAME"):
        assert option in out


def test_long_lines_wrap_to_the_terminal(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "70")
    with pytest.raises(SystemExit):
        build_parser(only="migrate").parse_args(["migrate", "-h"])
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines if " " in line.strip()) <= 70
    assert "[--range START-END | --mapping NAME]" in "\n".join(lines)    # an item is never split


def test_an_unsupported_argparse_feature_is_refused_when_the_parser_is_built():
    with pytest.raises(ValueError, match="unsupported"):
        ours.ArgumentParser().add_argument("--many", nargs="+")
