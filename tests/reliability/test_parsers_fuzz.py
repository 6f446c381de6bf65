"""The pure parsers on arbitrary text: a clear ValueError or a value, nothing else.

Issue 18 item 13: ``int()`` takes Unicode digits, so "²" crashed and "１２"
/ "١٢" were accepted as 12; ``--range ''`` and ``--mapping ''`` meant
"everything".  Every parser here must refuse any digit that is not ASCII,
refuse the empty string, and raise only its documented ValueError subclass.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from numad_py.defaults import parse_listen
from numad_py.errors import InvalidArgument
from numad_py.nodes import MAX_CPU, MAX_NODE, NodeListError, parse_cpulist, parse_nodes
from numad_py.selectors import (
    Mapping,
    check_selector,
    is_range,
    parse_maps,
    parse_range,
    select_mappings,
)
from numad_py.units import MAX_DURATION, MAX_SIZE, parse_duration, parse_pid, parse_size

# Unicode digits int() accepts; every parser must refuse them.
FOREIGN_DIGITS = ["²", "１２", "١٢", "۱", "߁", "१२", "𝟙", "¹", "₂", "٣-٤"]
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(FOREIGN_DIGITS)
ALMOST = st.text(alphabet="0123456789abcdefx-,. []/*?²１١\t", max_size=24)  # close to valid
MAPS = [Mapping(0x1000, 0x3000, "rw-p", "[heap]"), Mapping(0x5000, 0x6000, "rw-p", ""),
        Mapping(0x7000, 0x8000, "r-xp", "/usr/lib/libc.so.6"), Mapping(0x9000, 0xa000, "r--p", "[vvar]")]
MANY = settings(max_examples=400, deadline=None)


def _ascii_digits_only(text: str) -> bool:
    return all(not ch.isdigit() or ch in "0123456789" for ch in text)


@pytest.mark.parametrize("text", FOREIGN_DIGITS + [""])
def test_foreign_digits_and_empty_are_refused_everywhere(text: str) -> None:
    with pytest.raises(NodeListError):
        parse_nodes(text)
    with pytest.raises(InvalidArgument):
        parse_pid(text)
    with pytest.raises(InvalidArgument):
        parse_range(text)
    with pytest.raises(ValueError):
        parse_duration(text + "s")
    with pytest.raises(ValueError):
        parse_size(text + "MiB")
    if text:
        with pytest.raises(NodeListError):
            parse_cpulist(text)


def test_empty_mapping_name_is_an_error_not_everything() -> None:
    with pytest.raises(InvalidArgument):
        select_mappings(MAPS, "")
    with pytest.raises(InvalidArgument):
        check_selector("")
    assert [m.path for m in select_mappings(MAPS, "all")] == ["[heap]", "", "/usr/lib/libc.so.6"]


@MANY
@given(TEXT | ALMOST)
def test_node_lists(text: str) -> None:
    try:
        nodes = parse_nodes(text, all_nodes={0, 1})
    except NodeListError as exc:
        assert str(exc) and len(str(exc)) < 300
        return
    assert _ascii_digits_only(text) and all(0 <= n <= MAX_NODE for n in nodes)


@MANY
@given(TEXT | ALMOST)
def test_cpulists(text: str) -> None:
    try:
        cpus = parse_cpulist(text)
    except NodeListError:
        return
    assert _ascii_digits_only(text) and all(0 <= c <= MAX_CPU for c in cpus)


@MANY
@given(TEXT | ALMOST)
def test_pids(text: str) -> None:
    try:
        pid = parse_pid(text)
    except InvalidArgument:
        return
    assert text.strip().isascii() and pid == int(text) and pid > 0


@MANY
@given(TEXT | ALMOST | st.builds(lambda n, u: f"{n}{u}", TEXT | ALMOST, st.sampled_from(["ms", "s", "m", "h"])))
def test_durations(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert _ascii_digits_only(text) and 0 <= seconds <= MAX_DURATION


@MANY
@given(TEXT | ALMOST | st.builds(lambda n, u: f"{n}{u}", TEXT | ALMOST, st.sampled_from(["KiB", "GiB", "TiB"])))
def test_sizes(text: str) -> None:
    try:
        nbytes = parse_size(text)
    except ValueError:
        return
    assert _ascii_digits_only(text) and 0 <= nbytes <= MAX_SIZE


@MANY
@given(TEXT | ALMOST)
def test_ranges_and_selectors(text: str) -> None:
    try:
        start, end = parse_range(text)
        assert is_range(text) and _ascii_digits_only(text) and 0 <= start < end < 1 << 64
    except InvalidArgument:
        assert not is_range(text) or "end must be above start" in str(parse_range_error(text))
    try:
        chosen = select_mappings(MAPS, text)
    except InvalidArgument:
        assert text == ""
        return
    assert all(m.path != "[vvar]" for m in chosen)
    try:
        check_selector(text)
    except InvalidArgument:
        pass


def parse_range_error(text: str) -> Exception:
    try:
        parse_range(text)
    except InvalidArgument as exc:
        return exc
    raise AssertionError("no error")


@MANY
@given(st.text(max_size=300))
def test_maps_parser_skips_what_is_not_a_mapping(text: str) -> None:
    for m in parse_maps(text):
        assert m.start >= 0 and m.end >= 0


@MANY
@given(TEXT | ALMOST | st.builds(lambda h, p: f"{h}:{p}", TEXT | ALMOST, TEXT | ALMOST))
def test_listen(text: str) -> None:
    try:
        parsed = parse_listen(text)
    except ValueError:
        return
    if parsed is not None:
        host, port = parsed
        assert host and 0 <= port <= 65535 and _ascii_digits_only(text.rpartition(":")[2])


# --- the CLI's use of them (issue 18 item 13): errors, before any kernel call -----

@pytest.mark.parametrize("argv", [
    ["migrate", "{pid}", "--to", "0", "--range", ""],
    ["migrate", "{pid}", "--to", "0", "--mapping", ""],
    ["migrate", "²", "--to", "0"],
    ["migrate", "１２", "--to", "0"],
    ["migrate", "١٢", "--to", "0"],
    ["migrate", "{pid}", "--to", "²"],
    ["migrate", "{pid}", "--to", "１"],
    ["show", "{pid}", "--range", ""],
    ["show", "²"],
])
def test_cli_refuses_empty_selectors_and_foreign_digits(argv, capsys):
    import os

    from numad_py.cli import main

    code = main([a.format(pid=os.getpid()) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and "Traceback" not in err
