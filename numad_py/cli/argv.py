"""numad-py's command-line parser: the part of argparse's interface the CLI uses, without argparse.

argparse brings ``re``, ``gettext`` and ``enum`` with it: importing it and parsing
nothing costs 16 ms of CPU on the host, more than the interpreter's 14 ms start-up
(this module: 3 ms, the numad_py package included), before any command runs; a
script that calls numad-py in a loop pays it at every call (issue 17).  This
parser takes the same calls (``add_argument``, ``add_mutually_exclusive_group``,
``add_subparsers``/``add_parser``, ``set_defaults``, ``parse_args``), so the
commands' argument functions work with either, and keeps argparse's contract:
``-h`` prints help and exits 0; a usage error prints the usage and
``PROG: error: ...`` to stderr and exits 2.  It knows exactly what the CLI
uses: ``store_true`` flags, options with one value (``--opt V`` or
``--opt=V``), positionals (one, ``nargs="?"`` or :data:`REMAINDER`),
sub-commands.  Options are never abbreviated.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs a start-up; mypy reads this name as true
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

REMAINDER = "..."   # argparse.REMAINDER's value: every word from here on, options included
HELP_FLAGS = ("-h", "--help")


class ArgumentTypeError(ValueError):
    """Raised by a ``type=`` function: its text is the whole error message."""


class Namespace:
    """The parsed arguments, as attributes (argparse.Namespace's behaviour)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    if TYPE_CHECKING:      # as typeshed says of argparse.Namespace: any attribute, of any type
        def __getattr__(self, name: str) -> Any: ...

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Namespace) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in sorted(vars(self).items())) + ")"


class _Argument:
    def __init__(self, names: tuple[str, ...], *, action: str | None = None, dest: str | None = None,
                 metavar: str | None = None, help: str | None = None, default: Any = None,
                 type: Callable[[str], Any] | None = None, required: bool = False, nargs: str | None = None,
                 group: _Group | None = None) -> None:
        if action not in (None, "store_true") or nargs not in (None, "?", REMAINDER):
            raise ValueError(f"argv: unsupported action={action!r} / nargs={nargs!r} for {names}")
        self.names, self.flag = names, action == "store_true"
        self.positional = not names[0].startswith("-")
        long_name = next((n for n in names if n.startswith("--")), names[0])
        self.dest = dest or long_name.lstrip("-").replace("-", "_")
        self.metavar = metavar or (self.dest if self.positional else self.dest.upper())
        self.help, self.type, self.nargs, self.group = help, type, nargs, group
        self.default = False if self.flag and default is None else default
        self.required = required or (self.positional and nargs is None)

    def label(self) -> str:
        """How errors name it: ``--to`` or ``pid``."""
        return "/".join(self.names) if not self.positional else self.metavar

    def usage(self) -> str:
        if self.positional:
            return f"[{self.metavar}]" if self.nargs == "?" else self.metavar
        text = self.names[0] if self.flag else f"{self.names[0]} {self.metavar}"
        return text if self.required else f"[{text}]"

    def invocation(self) -> str:
        if self.positional or self.flag:
            return ", ".join(self.names) if not self.positional else self.metavar
        return ", ".join(f"{n} {self.metavar}" for n in self.names)


class _Group:
    """Mutually exclusive options; ``required``: exactly one of them."""

    def __init__(self, parser: ArgumentParser, required: bool) -> None:
        self.parser, self.required = parser, required
        self.members: list[_Argument] = []

    def add_argument(self, *names: str, **kwargs: Any) -> None:
        self.members.append(self.parser._add(names, group=self, **kwargs))


class _Subcommands:
    def __init__(self, parser: ArgumentParser, dest: str, required: bool, metavar: str | None) -> None:
        self.parser, self.dest, self.required, self._metavar = parser, dest, required, metavar
        self.choices: dict[str, ArgumentParser] = {}
        self.help: dict[str, str] = {}

    @property
    def metavar(self) -> str:
        return self._metavar or "{" + ",".join(self.choices) + "}"

    def add_parser(self, name: str, *, help: str | None = None, description: str | None = None) -> ArgumentParser:
        child = ArgumentParser(prog=f"{self.parser.prog} {name}", description=description)
        self.choices[name], self.help[name] = child, help or ""
        return child


class ArgumentParser:
    def __init__(self, prog: str | None = None, description: str | None = None) -> None:
        self.prog = prog or os.path.basename(sys.argv[0])
        self.description = description
        self.arguments: list[_Argument] = []
        self.groups: list[_Group] = []
        self.defaults: dict[str, Any] = {}
        self.subcommands: _Subcommands | None = None

    # --- building (argparse's names) ---------------------------------------

    def add_argument(self, *names: str, **kwargs: Any) -> None:
        self._add(names, **kwargs)

    def _add(self, names: tuple[str, ...], **kwargs: Any) -> _Argument:
        argument = _Argument(names, **kwargs)
        self.arguments.append(argument)
        return argument

    def add_mutually_exclusive_group(self, required: bool = False) -> _Group:
        group = _Group(self, required)
        self.groups.append(group)
        return group

    def add_subparsers(self, *, dest: str, required: bool = False, metavar: str | None = None) -> _Subcommands:
        self.subcommands = _Subcommands(self, dest, required, metavar)
        return self.subcommands

    def set_defaults(self, **values: Any) -> None:
        self.defaults.update(values)

    # --- parsing ------------------------------------------------------------

    def parse_args(self, argv: Sequence[str] | None = None) -> Namespace:
        namespace = Namespace()
        self._parse(list(sys.argv[1:] if argv is None else argv), namespace)
        return namespace

    def _parse(self, words: list[str], namespace: Namespace) -> None:
        for argument in self.arguments:
            setattr(namespace, argument.dest, [] if argument.nargs == REMAINDER else argument.default)
        for key, value in self.defaults.items():
            setattr(namespace, key, value)
        if self.subcommands:
            setattr(namespace, self.subcommands.dest, None)
        options = {name: a for a in self.arguments if not a.positional for name in a.names}
        waiting = [a for a in self.arguments if a.positional]
        seen: list[_Argument] = []
        only_positionals = False
        i = 0
        while i < len(words):
            word = words[i]
            i += 1
            if waiting and waiting[0].nargs == REMAINDER and (only_positionals or not word.startswith("-")
                                                              or word == "--"):
                setattr(namespace, waiting.pop(0).dest, words[i - 1:])
                return self._check(namespace, seen)
            if not only_positionals and word == "--":
                only_positionals = True
                continue
            if not only_positionals and _is_option(word):
                i = self._option(words, i, options, namespace, seen)
                continue
            if waiting:
                argument = waiting.pop(0)
                setattr(namespace, argument.dest, self._convert(argument, word))
                seen.append(argument)
            elif self.subcommands and getattr(namespace, self.subcommands.dest) is None:
                child = self.subcommands.choices.get(word)
                if child is None:
                    choices = ", ".join(repr(c) for c in self.subcommands.choices)
                    self.error(f"argument {self.subcommands.metavar}: invalid choice: {word!r} (choose from {choices})")
                setattr(namespace, self.subcommands.dest, word)
                self._check(namespace, seen)
                child._parse(words[i:], namespace)
                return
            else:
                self.error(f"unrecognized arguments: {' '.join(words[i - 1:])}")
        self._check(namespace, seen)
        if self.subcommands and self.subcommands.required and getattr(namespace, self.subcommands.dest) is None:
            self.error(f"the following arguments are required: {self.subcommands.metavar}")

    def _option(self, words: list[str], i: int, options: dict[str, _Argument], namespace: Namespace,
                seen: list[_Argument]) -> int:
        """Take the option ``words[i - 1]`` (and its value): the index of the next word."""
        word = words[i - 1]
        if word in HELP_FLAGS:
            self.print_help()
            raise SystemExit(0)
        name, has_value, value = word.partition("=") if word.startswith("--") else (word, "", "")
        option = options.get(name)
        if option is None:
            self.error(f"unrecognized arguments: {word}")
        if option.flag:
            if has_value:
                self.error(f"argument {option.label()}: ignored explicit argument {value!r}")
            setattr(namespace, option.dest, True)
        else:
            if not has_value:
                if i >= len(words) or _is_option(words[i]):
                    self.error(f"argument {option.label()}: expected one argument")
                value, i = words[i], i + 1
            setattr(namespace, option.dest, self._convert(option, value))
        seen.append(option)
        return i

    def _convert(self, argument: _Argument, text: str) -> Any:
        if argument.type is None:
            return text
        try:
            return argument.type(text)
        except ArgumentTypeError as exc:
            self.error(f"argument {argument.label()}: {exc}")
        except (TypeError, ValueError):
            self.error(f"argument {argument.label()}: invalid value: {text!r}")

    def _check(self, namespace: Namespace, seen: list[_Argument]) -> None:
        for group in self.groups:
            given = [a for a in group.members if a in seen]
            if len(given) > 1:
                self.error(f"argument {given[1].label()}: not allowed with argument {given[0].label()}")
            if group.required and not given:
                names = " ".join(a.names[0] for a in group.members)
                self.error(f"one of the arguments {names} is required")
        missing = [a.label() for a in self.arguments if a.required and a.group is None and a not in seen
                   and a.nargs != REMAINDER]
        if missing:
            self.error(f"the following arguments are required: {', '.join(missing)}")

    # --- output ---------------------------------------------------------------

    def format_usage(self) -> str:
        parts = [self.prog, "[-h]"]
        in_group = {id(a) for g in self.groups for a in g.members}
        for argument in self.arguments:
            if argument.positional or id(argument) in in_group:
                continue
            parts.append(argument.usage())
        for group in self.groups:
            alternatives = " | ".join(a.usage().strip("[]") for a in group.members)
            parts.append(f"({alternatives})" if group.required else f"[{alternatives}]")
        parts.extend(a.usage() for a in self.arguments if a.positional)
        if self.subcommands:
            parts.append(f"{self.subcommands.metavar} ...")
        head = f"usage: {self.prog} "
        lines = wrap(" ".join(parts[1:]), max(terminal_columns() - 2 - len(head), 20), keep=True)
        return head + ("\n" + " " * len(head)).join(lines) + "\n"

    def format_help(self) -> str:
        width = terminal_columns() - 2
        text = [self.format_usage()]
        if self.description:
            text.append("\n" + "\n".join(wrap(self.description, width)) + "\n")
        rows: list[tuple[str, str]] = []
        if self.subcommands:
            rows.append((self.subcommands.metavar, ""))
            rows.extend((f"  {name}", help_text) for name, help_text in self.subcommands.help.items())
        positionals = [(a.invocation(), a.help or "") for a in self.arguments if a.positional]
        options = [(", ".join(HELP_FLAGS), "show this help message and exit")]
        options.extend((a.invocation(), a.help or "") for a in self.arguments if not a.positional)
        for title, section in (("positional arguments", rows + positionals), ("options", options)):
            if section:
                text.append(f"\n{title}:\n" + "".join(_help_row(left, right, width) for left, right in section))
        return "".join(text)

    def print_help(self, file: Any = None) -> None:
        (file or sys.stdout).write(self.format_help())

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(self.format_usage() + f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _is_option(word: str) -> bool:
    """``-x``/``--xy``, but not ``-`` or a negative number: argparse passes those as values
    (when, as here, no option looks like a number), and a command then says what is wrong."""
    digits = word[1:].replace(".", "", 1)
    return word.startswith("-") and word != "-" and not digits.isdigit()


HELP_COLUMN = 24    # where help text starts, as in argparse


def _help_row(left: str, right: str, width: int) -> str:
    left = "  " + left
    lines = wrap(right, max(width - HELP_COLUMN, 20)) if right else []
    if not lines:
        return left + "\n"
    if len(left) + 2 > HELP_COLUMN:
        head = [left + "\n"]
    else:
        head = [left.ljust(HELP_COLUMN) + lines.pop(0) + "\n"]
    return "".join(head + [" " * HELP_COLUMN + line + "\n" for line in lines])


def wrap(text: str, width: int, keep: bool = False) -> list[str]:
    """Words of ``text`` in lines of at most ``width`` (textwrap imports re).  With ``keep``,
    a bracketed usage item (``[--to NODES]``) is one word: it is never split."""
    lines: list[str] = []
    line = ""
    for word in (_items(text) if keep else text.split()):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines


def _items(usage: str) -> list[str]:
    """``usage`` cut at the spaces outside brackets and parentheses."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(usage):
        depth += (char in "[(") - (char in "])")
        if char == " " and depth == 0:
            items.append(usage[start:i])
            start = i + 1
    return [item for item in [*items, usage[start:]] if item]


def terminal_columns() -> int:
    """The width argparse would use: ``$COLUMNS``, then the terminal on stdout, else 80
    (argparse asks shutil, which imports bz2, lzma and zlib)."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
        if columns > 0:
            return columns
    except ValueError:
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80    # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):     # no stdout (None), closed, or not a terminal
        return 80
