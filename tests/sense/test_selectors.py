"""The pure selector grammar (numad_py.selectors) on literal text, as a table."""

from __future__ import annotations

import pytest

from numad_py.errors import InvalidArgument
from numad_py.selectors import (
    Mapping,
    check_selector,
    parse_maps,
    parse_range,
    ranges_of,
    select_mappings,
    split_selectors,
)
from numad_py.units import parse_pid

MAPS_TEXT = """\
55d0c000-55d0e000 r--p 00000000 08:01 131 /usr/bin/cat
55d2a000-55d4b000 rw-p 00000000 00:00 0 [heap]
7f00a000-7f00c000 rw-p 00000000 00:00 0
7f10a000-7f10c000 rw-s 00000000 00:05 9 /dev/shm/pool (deleted)
7f20a000-7f20c000 rw-s 00000000 00:05 9 /dev/shm/cache
7ffd1000-7ffd3000 rw-p 00000000 00:00 0 [stack]
7ffd5000-7ffd7000 r--p 00000000 00:00 0 [vvar]
7ffd7000-7ffd9000 r-xp 00000000 00:00 0 [vdso]
garbage line that is not a mapping
zz-yy r--p 0 0 0 /not/hex
"""
MAPS = parse_maps(MAPS_TEXT)


def test_parse_maps_keeps_mappings_and_skips_garbage():
    assert len(MAPS) == 8
    assert MAPS[0] == Mapping(0x55D0C000, 0x55D0E000, "r--p", "/usr/bin/cat")
    assert MAPS[2].path == "" and MAPS[2].label() == "anon"


@pytest.mark.parametrize("selector, paths", [
    ("[heap]", ["[heap]"]),
    ("[stack]", ["[stack]"]),
    ("anon", ["[heap]", ""]),
    ("all", ["/usr/bin/cat", "[heap]", "", "/dev/shm/pool (deleted)", "/dev/shm/cache", "[stack]"]),
    ("/dev/shm/*", ["/dev/shm/pool (deleted)", "/dev/shm/cache"]),
    ("/usr/bin/cat", ["/usr/bin/cat"]),
    ("[vdso]", []),          # never movable, never selected
    ("/nope", []),
])
def test_select_mappings(selector, paths):
    assert [m.path for m in select_mappings(MAPS, selector)] == paths


@pytest.mark.parametrize("text, expected", [
    ("7f00a000-7f00c000", (0x7F00A000, 0x7F00C000)),
    ("0x1000-0x2000", (0x1000, 0x2000)),
    (" 1000-2000 ", (0x1000, 0x2000)),
])
def test_parse_range(text, expected):
    assert parse_range(text) == expected


@pytest.mark.parametrize("text", ["", "-", "2000-1000", "1000-1000", "g-h", "1000", "0-1ffffffffffffffff",
                                  "١٠٠٠-٢٠٠٠", "１０００-２０００"])
def test_parse_range_refuses(text):
    with pytest.raises(InvalidArgument):
        parse_range(text)


def test_split_and_resolve_selectors():
    assert split_selectors("all") == ([], ["all"])
    assert split_selectors(["[heap]", "1000-2000"]) == ([(0x1000, 0x2000)], ["[heap]"])
    assert ranges_of(MAPS, ["[stack]", "1000-2000"]) == [(0x1000, 0x2000), (0x7FFD1000, 0x7FFD3000)]


@pytest.mark.parametrize("selector", ["[heap]", "[stack]", "anon", "/dev/shm/*", "0x1000-0x2000"])
def test_check_selector_accepts(selector):
    assert check_selector(selector) == selector


@pytest.mark.parametrize("selector", ["", "  ", "heap", "[vdso]", "2000-1000"])
def test_check_selector_refuses(selector):
    with pytest.raises(InvalidArgument):
        check_selector(selector)


@pytest.mark.parametrize("text, pid", [("1", 1), (" 42 ", 42), ("4194304", 4194304)])
def test_parse_pid(text, pid):
    assert parse_pid(text) == pid


@pytest.mark.parametrize("text", ["", "0", "-1", "4194305", "12a", "²", "１２", "١٢", "1e3", "99999999999"])
def test_parse_pid_refuses(text):
    with pytest.raises(InvalidArgument):
        parse_pid(text)
