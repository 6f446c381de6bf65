"""argparse without the terminal-size import: the parser of every command is built at start-up.

``argparse.HelpFormatter`` imports :mod:`shutil` (and with it bz2, lzma and
zlib) to learn the terminal width, and argparse builds a formatter for every
``add_argument``.  The width comes from the same places shutil looks:
``$COLUMNS``, then the terminal on stdout, else 80.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys


@functools.cache   # argparse builds a formatter per argument; the terminal is the same
def terminal_columns() -> int:
    try:
        columns = int(os.environ.get("COLUMNS", ""))
        if columns > 0:
            return columns
    except ValueError:
        pass
    stdout = sys.__stdout__
    if stdout is None:
        return 80
    try:
        return os.get_terminal_size(stdout.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class HelpFormatter(argparse.HelpFormatter):
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position,
                         width if width is not None else terminal_columns() - 2)


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose default formatter is :class:`HelpFormatter`;
    ``add_subparsers`` makes its sub-parsers of the same class."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
