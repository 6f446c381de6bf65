"""Line numbers for TOML keys, which tomllib does not report.

A light scan of the text: table headers (``[daemon]``, ``[[rule]]``,
``[rule.match]``), ``key = value`` lines (dotted keys too) and keys inside
one-line inline tables.  Array tables get their per-file index, so the
second ``[[rule]]``'s ``nodes`` is the path ``("rule", 1, "nodes")``.
Keys inside multi-line strings may confuse it; the worst outcome is a
line number pointing at the enclosing table.
"""

from __future__ import annotations

import re

Path = tuple[str | int, ...]

_ARRAY_HEADER = re.compile(r"^\s*\[\[\s*([^\]]+?)\s*\]\]")
_TABLE_HEADER = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")
_INLINE_KEY = re.compile(r"""[{,]\s*([A-Za-z0-9_-]+|"[^"]*"|'[^']*')\s*=""")


def _split_key(dotted: str) -> list[str]:
    return [part.strip().strip("\"'") for part in dotted.split(".")]


class KeyLines:
    """Where each key path was written; :meth:`line_of` falls back to the nearest parent."""

    def __init__(self, text: str):
        self._lines: dict[Path, int] = {}
        array_counts: dict[tuple[str, ...], int] = {}
        table: Path = ()
        for number, line in enumerate(text.splitlines(), start=1):
            if m := _ARRAY_HEADER.match(line):
                name = tuple(_split_key(m.group(1)))
                array_counts[name] = array_counts.get(name, -1) + 1
                table = self._indexed(name, array_counts)
                self._lines.setdefault(table, number)
            elif m := _TABLE_HEADER.match(line):
                table = self._indexed(tuple(_split_key(m.group(1))), array_counts)
                self._lines.setdefault(table, number)
            elif m := _KEY.match(line):
                key = table + tuple(_split_key(m.group(1)))
                self._lines.setdefault(key, number)
                rest = line[m.end():]
                if rest.lstrip().startswith("{"):
                    for inner in _INLINE_KEY.finditer(rest):
                        self._lines.setdefault(key + (inner.group(1).strip("\"'"),), number)

    @staticmethod
    def _indexed(name: tuple[str, ...], array_counts: dict[tuple[str, ...], int]) -> Path:
        """``("rule", "match")`` -> ``("rule", 3, "match")`` inside the 4th ``[[rule]]``."""
        path: list[str | int] = []
        for depth, part in enumerate(name, start=1):
            path.append(part)
            if name[:depth] in array_counts:
                path.append(array_counts[name[:depth]])
        return tuple(path)

    def line_of(self, path: Path) -> int:
        """The line of ``path`` or of its closest written parent; 1 when nothing matches."""
        for end in range(len(path), 0, -1):
            if path[:end] in self._lines:
                return self._lines[path[:end]]
        return 1
