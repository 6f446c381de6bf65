"""Read numad-py.toml and its sibling rules.d/*.toml into one :class:`Config`.

Every problem in every file is collected before giving up, so
``check-config`` shows them all at once, each as
``FILE:LINE: rules[2].nodes: message``.  The rule index is per file:
``rules[0]`` is the first ``[[rule]]`` table of the file named on the line.

Any bytes at all end as problems, never as an exception: invalid UTF-8,
nesting deep enough to exhaust the recursion limit, integers too long to
convert, regexes too large to compile.  A reload with a broken file must
keep the old rules, so the daemon relies on :class:`ConfigError` being the
only way this fails.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from .. import defaults
from .locate import KeyLines
from .models import Config, ConfigFile, Rule, _Model, _short

DEFAULT_CONFIG_PATH = Path(defaults.CONFIG_PATH)
RULES_DIR = "rules.d"
MAX_FILE_BYTES = 1 << 20   # a config file larger than 1 MiB is not a config file
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    path: str  # "rules[2].nodes", "daemon.scan_interval", "syntax"
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


class ConfigError(Exception):
    """One or more problems in the configuration files."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class RulesFile(_Model):
    """A rules.d file: only ``[[rule]]`` tables."""

    rule: list[Rule] = Field(default_factory=list, description="Placement rules, in order.")


def rules_files(config_path: Path) -> list[Path]:
    """The rules.d/*.toml files next to ``config_path``, in lexical order."""
    return sorted((config_path.parent / RULES_DIR).glob("*.toml"))


def load_config(path: Path, *, online_nodes: frozenset[int] | None,
                unsupported_policies: dict[str, str] | None = None) -> Config:
    """Load the main file and its rules.d; raise :class:`ConfigError` listing every problem.

    ``online_nodes``: the machine's nodes, to reject rules naming others; None skips that check.
    ``unsupported_policies``: policy modes this kernel lacks -> why (one line); None skips that check.
    """
    problems: list[Problem] = []
    context = {"online_nodes": online_nodes, "unsupported_policies": unsupported_policies}
    main = _load_file(path, ConfigFile, context, problems)
    rules = list(main.rule) if main else []
    files = [str(path)]
    for rules_path in rules_files(path):
        parsed = _load_file(rules_path, RulesFile, context, problems)
        files.append(str(rules_path))
        if parsed:
            rules.extend(parsed.rule)
    problems.extend(_duplicate_names(rules))
    if problems:
        raise ConfigError(problems)
    assert isinstance(main, ConfigFile)  # no problems means the main file parsed
    return Config(daemon=main.daemon, metrics=main.metrics, control=main.control, rules=rules, files=files)


def _load_file(path: Path, model: type[ConfigFile] | type[RulesFile], context: dict,
               problems: list[Problem]) -> ConfigFile | RulesFile | None:
    name = str(path)
    text = _read_text(path, problems)
    if text is None:
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.append(_syntax_problem(name, exc))
        return None
    except (RecursionError, MemoryError):
        problems.append(Problem(name, 1, "syntax", "arrays or tables nested too deeply"))
        return None
    except ValueError as exc:  # e.g. an integer literal past int()'s digit limit
        problems.append(Problem(name, 1, "syntax", _clip(str(exc), 200)))
        return None
    _name_rules(data, path.stem)
    try:
        parsed = model.model_validate(data, context=context)
    except ValidationError as exc:
        lines = KeyLines(text)
        problems.extend(_problem(name, lines, model, err) for err in exc.errors())
        return None
    except (RecursionError, MemoryError):
        problems.append(Problem(name, 1, "file", "values nested too deeply"))
        return None
    return parsed.model_copy(update={"rule": [r.located(name, i) for i, r in enumerate(parsed.rule)]})


def _read_text(path: Path, problems: list[Problem]) -> str | None:
    """The file as text, or None after recording why it cannot be one."""
    name = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        problems.append(Problem(name, 1, "file", f"cannot read: {exc.strerror or exc}"))
        return None
    if len(raw) > MAX_FILE_BYTES:
        problems.append(Problem(name, 1, "file", f"larger than {MAX_FILE_BYTES >> 20} MiB; not a config file"))
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        problems.append(Problem(name, line, "syntax",
                                f"not valid UTF-8: byte {raw[exc.start]:#04x} (column {column}); "
                                "TOML files are UTF-8 text"))
        return None


def _name_rules(data: dict, stem: str) -> None:
    """Unnamed rules are called FILESTEM[INDEX], e.g. ``10-db[0]``."""
    rules = data.get("rule")
    if isinstance(rules, list):
        for index, rule in enumerate(rules):
            if isinstance(rule, dict):
                rule.setdefault("name", f"{stem}[{index}]")


def _syntax_problem(name: str, exc: tomllib.TOMLDecodeError) -> Problem:
    message = str(exc)
    position = _TOML_POSITION.search(message)
    if not position:
        return Problem(name, 1, "syntax", message)
    line, column = position.groups()
    return Problem(name, int(line), "syntax", f"{message[: position.start()]} (column {column})")


def _problem(name: str, lines: KeyLines, model: type[BaseModel], err: Any) -> Problem:
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        message = _unknown_key_message(model, loc)
    elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
        message = _clip(str(err["ctx"]["error"]), 300)
    else:
        message = f"{err['msg'][:1].lower()}{err['msg'][1:]}, got {_clip(repr(err.get('input')), 80)}"
    return Problem(name, lines.line_of(loc), _render_path(loc), message)


def _render_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + ("rules" if not out and part == "rule" else part)
    return out or "(top level)"


def _unknown_key_message(model: type[BaseModel], loc: tuple) -> str:
    try:
        known = _fields_at(model, loc[:-1])
    except (LookupError, KeyError):
        known = []
    key = str(loc[-1])
    message = f"unknown key {_short(key)}"
    if model is RulesFile and len(loc) == 1:
        return message + " (rules.d files hold only [[rule]] tables)"
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return message + f" (did you mean {close[0]!r}?)"
    return message + f" (known keys: {', '.join(known)})"


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the model found by walking ``loc`` (list indexes skipped)."""
    current = model
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = current.model_fields[part].annotation
        current = _model_in(annotation)
    return list(current.model_fields)


def _model_in(annotation: Any) -> type[BaseModel]:
    """``list[Rule]`` -> Rule, ``Match`` -> Match."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    raise LookupError(annotation)


def _duplicate_names(rules: list[Rule]) -> list[Problem]:
    problems = []
    first_seen: dict[str, Rule] = {}
    for rule in rules:
        earlier = first_seen.setdefault(rule.name, rule)
        if earlier is not rule:
            line = _line_of_name(rule)
            problems.append(
                Problem(
                    rule.source,
                    line,
                    f"rules[{rule.index}].name",
                    f"rule name {rule.name!r} is already used by rules[{earlier.index}] in {earlier.source}",
                )
            )
    return problems


def _line_of_name(rule: Rule) -> int:
    """The line of a rule's ``name`` key; 1 if the file cannot be read again."""
    problems: list[Problem] = []
    text = _read_text(Path(rule.source), problems)
    return 1 if text is None else KeyLines(text).line_of(("rule", rule.index, "name"))


def _clip(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters for a message."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
