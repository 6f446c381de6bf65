"""A config regex as the shim can match it: a few fnmatch(3) globs, or nothing.

The daemon matches ``comm``/``exe`` with Python's ``re.fullmatch``.  The shim
runs inside every program at load time and matches with the C library's
``fnmatch(3)`` (no flags): no compiled state, no allocation on failure, no
pattern that can fail or take long.  So only the regexes whose meaning a set
of globs states exactly are written for the shim:

* literal characters (printable ASCII; ``\\`` before punctuation), ``.``
  (one character, glob ``?``), ``.*`` (glob ``*``), ``.+`` (glob ``?*``);
* a class of letters, digits, ``_`` and ``.`` with ranges: ``[a-z0-9_]``,
  ``[^0-9]`` (glob ``[a-z0-9_]``, ``[!0-9]``), not repeated;
* ``^``/``\\A`` and ``$``/``\\Z`` at the ends (a full match anchors anyway);
* ``x?`` for one of the above but ``.*``/``.+``: two globs, with and without it;
* top-level ``|``: one glob per alternative.

At most 16 globs per regex, none of them empty.  Anything else (groups,
``+ * {m,n}`` on anything but ``.``, ``\\d``, lookaround, flags) raises
:class:`NotExpressible`; the rules compiler then leaves the rule out of the
shim's file and says so.  For names of printable ASCII the globs
match exactly what the regex matches; a name holding a newline or a
non-ASCII character may differ on ``?``, ``*`` and classes (the shim
counts bytes and lets ``*`` cross a newline).
"""

from __future__ import annotations

import string


class NotExpressible(ValueError):
    """A regex with no exact glob equivalent for the shim."""


_GLOB_SPECIAL = set("*?[\\")
_REGEX_SPECIAL = set(".^$*+?{}[]()|\\")
_CLASS_CHARS = set(string.ascii_letters + string.digits + "_.")
_RANGE_KINDS = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
MAX_ALTERNATIVES = 16


def _literal(c: str) -> str:
    if not (c.isascii() and c.isprintable()):
        raise NotExpressible(f"character {c!r} (only printable ASCII is written for the shim)")
    return "\\" + c if c in _GLOB_SPECIAL else c


def _char_class(p: str, i: int) -> tuple[int, str]:
    """``p[i] == "["``: (index after ``]``, the glob class)."""
    j = i + 1
    negate = p.startswith("^", j)
    j += negate
    body = ""
    while j < len(p) and p[j] != "]":
        c = p[j]
        if c not in _CLASS_CHARS:
            raise NotExpressible(f"{c!r} in a character class")
        if p.startswith("-", j + 1) and j + 2 < len(p) and p[j + 2] != "]":
            hi = p[j + 2]
            if not any(c in kind and hi in kind and c <= hi for kind in _RANGE_KINDS):
                raise NotExpressible(f"character range {c}-{hi}")
            body += f"{c}-{hi}"
            j += 3
        else:
            body += c
            j += 1
    if j >= len(p) or not body:
        raise NotExpressible("unterminated or empty character class")
    return j + 1, "[" + ("!" if negate else "") + body + "]"


def _alternative(p: str) -> list[str]:
    if p.startswith("^"):
        p = p[1:]
    elif p.startswith("\\A"):
        p = p[2:]
    if p.endswith("\\Z") and not p.endswith("\\\\Z"):
        p = p[:-2]
    elif p.endswith("$") and not p.endswith("\\$"):
        p = p[:-1]
    variants: list[str] = [""]          # one glob per choice of the optional ('x?') atoms
    i = 0
    while i < len(p):
        c = p[i]
        if c == "\\":
            e = p[i + 1:i + 2]
            if not e or e.isalnum() or e.isspace() or not e.isascii():
                raise NotExpressible(f"escape \\{e}")
            atom = _literal(e)
            i += 2
        elif c == ".":
            following = p[i + 1:i + 2]
            if following in ("*", "+"):
                atom = "*" if following == "*" else "?*"
                i += 2 + p.startswith("?", i + 2)      # lazy: the same strings match in full
            else:
                atom = "?"
                i += 1
        elif c == "[":
            i, atom = _char_class(p, i)
        elif c in _REGEX_SPECIAL:
            raise NotExpressible(f"{c!r} here (groups, repeats and inner anchors have no glob)")
        else:
            atom = _literal(c)
            i += 1
        if atom not in ("*", "?*") and p.startswith("?", i):
            i += 1 + p.startswith("?", i + 1)          # 'x?' or lazy 'x??': with and without
            variants = [v + a for v in variants for a in ("", atom)]
            if len(variants) > MAX_ALTERNATIVES:
                raise NotExpressible(f"more than {MAX_ALTERNATIVES} variants of optional characters")
        else:
            variants = [v + atom for v in variants]
        if i < len(p) and p[i] in "*+?{" and atom not in ("*", "?*"):
            raise NotExpressible(f"repeat {p[i]!r} (a glob repeats only '.', and 'x?' is written twice)")
    if "" in variants:
        raise NotExpressible("an alternative that matches the empty name")
    return variants


def _split_alternatives(p: str) -> list[str]:
    """Split at each ``|`` that is not escaped and not inside a ``[...]`` class."""
    parts, start, i, in_class = [], 0, 0, False
    while i < len(p):
        c = p[i]
        if c == "\\":
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
            # a ']' first in the class (after an optional '^') is a literal
            i += 3 if p.startswith("[^]", i) else 2 if p.startswith(("[]", "[^"), i) else 1
            continue
        if c == "]" and in_class:
            in_class = False
        elif c == "|" and not in_class:
            parts.append(p[start:i])
            start = i + 1
        i += 1
    return [*parts, p[start:]]


def regex_to_globs(pattern: str) -> list[str]:
    """Globs whose union matches what ``re.fullmatch(pattern, name)`` matches."""
    alternatives = _split_alternatives(pattern)
    if len(alternatives) > MAX_ALTERNATIVES:
        raise NotExpressible(f"more than {MAX_ALTERNATIVES} alternatives")
    globs = [g for a in alternatives for g in _alternative(a)]
    if len(globs) > MAX_ALTERNATIVES:
        raise NotExpressible(f"more than {MAX_ALTERNATIVES} globs")
    return list(dict.fromkeys(globs))
