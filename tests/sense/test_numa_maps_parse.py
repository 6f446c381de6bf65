"""parse_numa_maps on literal lines, against the regular expressions it replaced.

The parser splits fields with str methods (``re`` costs `numad-py show` ~4 ms
of start-up); on every line below, and on generated ones, it must count what
the old expressions counted (but for a count with trailing garbage, below)."""

from __future__ import annotations

import re

from hypothesis import given, settings, strategies as st

from numad_py.sense.maps import parse_numa_maps, parse_task_policy

NODE_COUNT = re.compile(r"\bN([0-9]+)=([0-9]+)")
PAGESIZE = re.compile(r"\bkernelpagesize_kB=([0-9]+)")
HEX_ADDRESS = re.compile(r"[0-9a-fA-F]+")


def reference(text: str) -> list[tuple[int, dict[int, int]]]:
    out = []
    for line in text.splitlines():
        addr, _, rest = line.partition(" ")
        if not HEX_ADDRESS.fullmatch(addr):
            continue
        size_kb = PAGESIZE.search(rest)
        page = int(size_kb.group(1)) * 1024 if size_kb else 4096
        per_node: dict[int, int] = {}
        for node, pages in NODE_COUNT.findall(rest):
            per_node[int(node)] = per_node.get(int(node), 0) + int(pages) * page
        out.append((int(addr, 16), per_node))
    return out


LINES = """\
55d0c000 default file=/usr/bin/cat mapped=2 N0=2 kernelpagesize_kB=4
7f00a000 prefer:1 anon=512 dirty=512 active=0 N0=256 N1=256 kernelpagesize_kB=4
7f200000 interleave:0-1 anon=2 dirty=2 N1=2 kernelpagesize_kB=2048
7ffd1000 default stack anon=3 dirty=3 N0=3
7f300000 bind:1 huge anon=1 dirty=1 N1=1 kernelpagesize_kB=1048576
not-an-address default N0=5
7f4 default file=/tmp/with\\040space N2=7 kernelpagesize_kB=4
7f5000 default N１=5 N0=x N=3 N3= N4=5
"""


def test_literal_lines_match_the_expressions_they_replaced():
    parsed = parse_numa_maps(LINES)
    assert parsed == reference(LINES)
    assert parsed[1] == (0x7f00a000, {0: 256 * 4096, 1: 256 * 4096})
    assert parsed[2] == (0x7f200000, {1: 2 * 2 << 20})
    assert parse_task_policy(LINES) == "default"


def test_a_count_with_trailing_garbage_is_not_counted():
    # The one difference: the expression took the leading digits of "N0=1x"; no kernel writes it.
    assert parse_numa_maps("7f00 default N0=1x N1=2") == [(0x7f00, {1: 2 * 4096})]


TOKENS = st.sampled_from(["default", "prefer:1", "anon=4", "dirty=1", "N0=3", "N1=12", "N10=1", "N=2", "N2=",
                          "kernelpagesize_kB=4", "kernelpagesize_kB=2048", "file=/x", "huge", "NX=1"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1 << 48), st.lists(TOKENS, max_size=8)), max_size=6))
def test_generated_lines_match_the_expressions_they_replaced(lines):
    text = "\n".join(f"{addr:x} " + " ".join(tokens) for addr, tokens in lines)
    assert parse_numa_maps(text) == reference(text)
