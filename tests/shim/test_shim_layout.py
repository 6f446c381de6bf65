"""The Python formats of the shim's files agree with cext/preload/numad_shim.h, read at test time.

A tiny C program including the header prints every size, offset and constant
the Python side also states; the counter names come from the header's own
``enum numad_counter``.  Change one side alone and this fails.
"""

from __future__ import annotations

import json
from pathlib import Path
import re
import shutil
import struct
import subprocess

import pytest

from numad_py.shim import rules, stats, table

HEADER = Path(__file__).resolve().parents[2] / "cext" / "preload" / "numad_shim.h"

PROBE = r"""
#include <stddef.h>
#include <stdio.h>
#include "numad_shim.h"
#define OFF(s, f) printf("\"%s.%s\": [%zu, %zu],\n", #s, #f, offsetof(struct s, f), sizeof(((struct s *)0)->f))
int main(void)
{
    printf("{\n");
    OFF(numad_table_header, magic); OFF(numad_table_header, version); OFF(numad_table_header, header_size);
    OFF(numad_table_header, entry_size); OFF(numad_table_header, nr_entries); OFF(numad_table_header, seq);
    OFF(numad_table_header, generation); OFF(numad_table_header, updated_ns);
    OFF(numad_table_header, expires_ns); OFF(numad_table_header, flags); OFF(numad_table_header, reserved);
    OFF(numad_table_entry, free_bytes); OFF(numad_table_entry, total_bytes); OFF(numad_table_entry, flags);
    OFF(numad_table_entry, reserved0); OFF(numad_table_entry, reserved1);
    OFF(numad_shim_stats, magic); OFF(numad_shim_stats, version); OFF(numad_shim_stats, nr_counters);
    OFF(numad_shim_stats, counters);
    printf("\"sizeof.numad_table_header\": %zu,\n", sizeof(struct numad_table_header));
    printf("\"sizeof.numad_table_entry\": %zu,\n", sizeof(struct numad_table_entry));
    printf("\"sizeof.numad_shim_stats\": %zu,\n", sizeof(struct numad_shim_stats));
    printf("\"NUMAD_NR_COUNTERS\": %d,\n", NUMAD_NR_COUNTERS);
    printf("\"NUMAD_TABLE_MAGIC\": \"%s\", \"NUMAD_STATS_MAGIC\": \"%s\",\n", NUMAD_TABLE_MAGIC, NUMAD_STATS_MAGIC);
    printf("\"NUMAD_RULES_HEADER\": \"%s\",\n", NUMAD_RULES_HEADER);
    printf("\"NUMAD_TABLE_VERSION\": %d, \"NUMAD_STATS_VERSION\": %d,\n", NUMAD_TABLE_VERSION, NUMAD_STATS_VERSION);
    printf("\"NUMAD_TABLE_MAX_ENTRIES\": %d,\n", NUMAD_TABLE_MAX_ENTRIES);
    printf("\"NUMAD_TABLE_SUPERSEDED\": %u, \"NUMAD_ENTRY_PRESENT\": %u, \"NUMAD_ENTRY_HAS_CPUS\": %u,\n",
           NUMAD_TABLE_SUPERSEDED, NUMAD_ENTRY_PRESENT, NUMAD_ENTRY_HAS_CPUS);
    printf("\"NUMAD_RULES_MAX_BYTES\": %d, \"NUMAD_RULES_MAX_LINE\": %d,\n", NUMAD_RULES_MAX_BYTES, NUMAD_RULES_MAX_LINE);
    printf("\"NUMAD_RULES_MAX_RULES\": %d, \"NUMAD_RULES_MAX_INCLUDES\": %d\n}\n",
           NUMAD_RULES_MAX_RULES, NUMAD_RULES_MAX_INCLUDES);
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory) -> dict:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("layout")
    (d / "probe.c").write_text(PROBE)
    subprocess.run([gcc, "-Wall", "-Werror", f"-I{HEADER.parent}", "-o", str(d / "probe"), str(d / "probe.c")],
                   check=True, capture_output=True)
    return json.loads(subprocess.run([str(d / "probe")], check=True, capture_output=True, text=True).stdout)


def fields(fmt: struct.Struct) -> list[tuple[int, int]]:
    """(offset, size) of each field of a packed ('=') struct format."""
    out, offset = [], 0
    for count, code in re.findall(r"(\d*)([a-zA-Z])", fmt.format.lstrip("=<>!@")):
        size = struct.calcsize("=" + code) * (int(count) if count and code == "s" else 1)
        repeat = 1 if code == "s" else int(count or 1)
        for _ in range(repeat):
            out.append((offset, size))
            offset += size
    return out


def c_fields(layout: dict, struct_name: str) -> list[tuple[int, int]]:
    return [tuple(v) for k, v in layout.items() if k.startswith(struct_name + ".")]


def test_table_header_and_entry(c_layout):
    assert fields(table.TABLE_HEADER) == c_fields(c_layout, "numad_table_header")
    assert fields(table.TABLE_ENTRY) == c_fields(c_layout, "numad_table_entry")
    assert table.TABLE_HEADER.size == c_layout["sizeof.numad_table_header"]
    assert table.TABLE_ENTRY.size == c_layout["sizeof.numad_table_entry"]
    offsets = dict(c_fields(c_layout, "numad_table_header"))       # offset -> size, for the stores
    assert {table.OFF_SEQ, table.OFF_GEN, table.OFF_UPDATED, table.OFF_EXPIRES} <= {o for o, s in offsets.items() if s == 8}
    names = {k.split(".")[1]: v[0] for k, v in c_layout.items() if k.startswith("numad_table_header.")}
    assert (table.OFF_SEQ, table.OFF_GEN, table.OFF_UPDATED, table.OFF_EXPIRES, table.OFF_FLAGS) == (
        names["seq"], names["generation"], names["updated_ns"], names["expires_ns"], names["flags"])


def test_table_constants(c_layout):
    assert table.TABLE_MAGIC.decode() == c_layout["NUMAD_TABLE_MAGIC"]
    assert table.TABLE_VERSION == c_layout["NUMAD_TABLE_VERSION"]
    assert table.TABLE_MAX_ENTRIES == c_layout["NUMAD_TABLE_MAX_ENTRIES"]
    assert table.TABLE_SUPERSEDED == c_layout["NUMAD_TABLE_SUPERSEDED"]
    assert (table.ENTRY_PRESENT, table.ENTRY_HAS_CPUS) == (c_layout["NUMAD_ENTRY_PRESENT"],
                                                           c_layout["NUMAD_ENTRY_HAS_CPUS"])


def test_rules_constants(c_layout):
    assert rules.RULES_HEADER == c_layout["NUMAD_RULES_HEADER"]
    assert (rules.RULES_MAX_BYTES, rules.RULES_MAX_LINE, rules.RULES_MAX_RULES, rules.RULES_MAX_INCLUDES) == (
        c_layout["NUMAD_RULES_MAX_BYTES"], c_layout["NUMAD_RULES_MAX_LINE"],
        c_layout["NUMAD_RULES_MAX_RULES"], c_layout["NUMAD_RULES_MAX_INCLUDES"])


def header_counter_names() -> list[str]:
    """``enum numad_counter`` of the header, NC_X -> "x", NC_FB_X -> "fallback_x"."""
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    body = re.search(r"enum\s+numad_counter\s*\{(.*?)\}", text, re.S).group(1)
    names = [re.match(r"\s*(\w+)", item).group(1) for item in body.split(",") if item.strip()]
    assert names[-1] == "NUMAD_NR_COUNTERS"
    return [re.sub(r"^FB_", "FALLBACK_", n.removeprefix("NC_")).lower() for n in names[:-1]]


def test_counters(c_layout):
    assert list(stats.COUNTERS) == header_counter_names()
    assert len(stats.COUNTERS) == c_layout["NUMAD_NR_COUNTERS"]
    assert fields(stats.STATS_HEADER) == c_fields(c_layout, "numad_shim_stats")[:3]
    assert c_layout["numad_shim_stats.counters"] == [stats.STATS_HEADER.size, 8 * len(stats.COUNTERS)]
    assert stats.STATS_SIZE == c_layout["sizeof.numad_shim_stats"]
    assert stats.STATS_MAGIC.decode() == c_layout["NUMAD_STATS_MAGIC"]
    assert stats.STATS_VERSION == c_layout["NUMAD_STATS_VERSION"]
