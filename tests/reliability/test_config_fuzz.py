"""Any bytes in a config file end as a FILE:LINE problem and exit 1, never a traceback.

Issue 18 items 8 and 12: 109 of 1,000 mutated copies of the shipped config
raised (UnicodeDecodeError, RecursionError), and a SIGHUP with such a file
killed the daemon.  Here hypothesis mutates the shipped files (byte flips,
inserted bytes, spliced hostile snippets) and feeds random bytes; the
loader may only return a Config or raise ConfigError, and check-config may
only return 0 or 1.  The figures line prints attempts and outcomes.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from numad_py.cli.config_cmds import check_config_main
from numad_py.config import ConfigError, load_config

SHIPPED = Path(__file__).resolve().parents[2] / "etc" / "numad-py"
MAIN = (SHIPPED / "numad-py.toml").read_bytes()
RULES = {p.name: p.read_bytes() for p in sorted((SHIPPED / "rules.d").glob("*.toml"))}

# Each once crashed a loader or a daemon (issue 18) or is a classic of its kind.
HOSTILE = [
    b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x00",
    b"x = " + b"[" * 5000 + b"]" * 5000,
    b"x = " + b"{a = " * 2000 + b"1" + b"}" * 2000,
    b'[[rule]]\nmatch.comm = "a{99999999999}"\n',
    b'[[rule]]\nmatch.comm = "' + b"(" * 500 + b"a" + b")" * 500 + b'"\n',
    b'[daemon]\nscan_interval = "3000000h"\n',
    b'[daemon]\nscan_interval = "' + b"9" * 400 + b's"\n',
    b'[daemon]\nbudget = "99999999999999999999TiB"\n',
    b"x = " + b"9" * 5000 + b"\n",
    b'[metrics]\nlisten = "::1:9816"\n',
    b'[[rule]]\nmatch.comm = "x"\nnodes = "\xc2\xb2"\n',
    b'[[rule]]\nmatch.comm = "x"\nnodes = "\xef\xbc\x91"\n',
    b'[[rule]]\nmatch.comm = "x"\nmemory = [""]\n',
    b'[[rule]]\nmatch.comm = "x"\nmemory = ["0-ffffffffffffffffffff"]\n',
    b"[[rule]]\n" * 200,
]


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "splice", "duplicate"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            i = min(at, len(data) - 1)
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 40))]
        elif kind == "splice":
            data[at:at] = b"\n" + draw(st.sampled_from(HOSTILE)) + b"\n"
        elif kind == "duplicate":
            end = min(len(data), at + draw(st.integers(1, 200)))
            data[at:at] = data[at:end]
    return bytes(data)


def _tree(root: Path, main: bytes, rules: dict[str, bytes]) -> Path:
    (root / "rules.d").mkdir()
    (root / "numad-py.toml").write_bytes(main)
    for name, body in rules.items():
        (root / "rules.d" / name).write_bytes(body)
    return root / "numad-py.toml"


FIGURES: Counter[str] = Counter()


def _check(main: bytes, rules: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _tree(Path(tmp), main, rules)
        FIGURES["attempts"] += 1
        try:
            load_config(path, online_nodes=frozenset({0, 1}))
            FIGURES["valid"] += 1
        except ConfigError as exc:
            FIGURES["rejected"] += 1
            for problem in exc.problems:   # every problem names a file and a line
                assert problem.file.startswith(tmp) and problem.line >= 1
                assert "\n" not in problem.message and len(problem.message) < 1000
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = check_config_main(str(path))
        assert code in (0, 1)
        assert "Traceback" not in err.getvalue()


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=st.data())
def test_mutated_shipped_config_never_raises(data: st.DataObject) -> None:
    which = data.draw(st.sampled_from(["main"] + sorted(RULES)))
    rules = dict(RULES)
    main = MAIN
    if which == "main":
        main = data.draw(mutated(MAIN))
    else:
        rules[which] = data.draw(mutated(RULES[which]))
    _check(main, rules)


@FUZZ
@given(main=st.binary(max_size=2000), rule=st.binary(max_size=500))
def test_random_bytes_never_raise(main: bytes, rule: bytes) -> None:
    _check(main, {"50-random.toml": rule})


@pytest.mark.parametrize("snippet", HOSTILE, ids=range(len(HOSTILE)))
def test_each_hostile_snippet_is_a_located_problem(snippet: bytes, tmp_path: Path) -> None:
    path = _tree(tmp_path, snippet, {})
    with pytest.raises(ConfigError) as info:
        load_config(path, online_nodes=frozenset({0, 1}))
    assert all(p.file == str(path) and p.line >= 1 for p in info.value.problems)


def test_invalid_utf8_names_line_and_byte(tmp_path: Path) -> None:
    path = _tree(tmp_path, b'[daemon]\nscan_interval = "10s"\n# caf\xe9\n', {})
    with pytest.raises(ConfigError) as info:
        load_config(path, online_nodes=None)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:3: syntax: not valid UTF-8: byte 0xe9 (column 6); TOML files are UTF-8 text"]


def test_figures() -> None:
    """Runs last in this file: the figures of the fuzz runs above."""
    if FIGURES["attempts"]:
        print(f"\nconfig fuzz: attempts={FIGURES['attempts']} valid={FIGURES['valid']} "
              f"rejected={FIGURES['rejected']} tracebacks=0")
