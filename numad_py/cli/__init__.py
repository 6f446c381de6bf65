"""The ``numad-py`` command: argument parsing and printing, nothing else."""

from .entry import build_parser, main

__all__ = ["build_parser", "main"]
