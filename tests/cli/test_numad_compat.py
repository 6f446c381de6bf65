"""The numad front door: -w answers in numad's grammar, every other numad flag is
either honoured or refused with one line (exit 1), never a traceback."""

from __future__ import annotations

import re

import pytest

from numad_py.cli import numad_compat
from numad_py.cli import main as numad_py

NODELIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")  # what libvirt's virBitmapParse takes


@pytest.mark.parametrize("argv", [["-w", "1"], ["-w1:64"], ["-w", "1:64"], ["-d", "-w", "1"], ["-l", "7", "-w", "2"]])
def test_w_prints_one_node_list(argv, capsys):
    assert numad_compat.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and NODELIST.match(out[0]), out


@pytest.mark.parametrize("flag, value", [("i", "5"), ("i", "2:15"), ("u", "85"), ("p", "1"), ("x", "1"),
                                         ("r", "1"), ("R", "0-1"), ("K", "1"), ("S", "0"), ("C", "1"),
                                         ("H", "100"), ("m", "50"), ("t", "5")])
def test_flags_numad_py_cannot_honour_are_refused_in_one_line(flag, value, capsys):
    assert numad_compat.main([f"-{flag}", value]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"numad: -{flag} is not supported by numad-py: ")


@pytest.mark.parametrize("argv", [["-w"], ["-w", "0"], ["-w", "x"], ["-w", "２"], ["-w", "1:"], ["-w", "1:-5"],
                                  ["-Z"], ["foo"], ["-dd"]])
def test_bad_input_is_one_line_and_exit_1(argv, capsys):
    assert numad_compat.main(argv) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_version_and_help(capsys):
    assert numad_compat.main(["-V"]) == 0
    assert "numad-py" in capsys.readouterr().out
    assert numad_compat.main(["-h"]) == 0
    assert "-w NCPUS" in capsys.readouterr().out


@pytest.mark.parametrize("argv, code", [(["advise", "--cpus", "0"], 2), (["advise", "--cpus", "1", "--memory", "lots"], 2),
                                        (["advise", "--cpus", "1", "--memory", "64MiB"], 0)])
def test_advise_command(argv, code):
    assert numad_py(argv) == code
