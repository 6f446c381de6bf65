"""A ``numad``-compatible command line in front of numad-py.

Installed as ``numad`` only on request (``make install NUMAD_COMPAT=1``), never over a
real numad.  ``-w`` is honoured with numad's output; ``-V``/``-h``/``-d``/``-l`` are
accepted; every flag that would steer numad's own automatic daemon is refused with a
one-line reason (exit 1): numad-py is driven by rules in /etc/numad-py/, not by flags.
numad's syntax: ``numad [-dhSV] [-C 0|1] [-H THP_ms] [-i [min:]max] [-K 0|1] [-l level]
[-m target_mem%] [-p pid] [-r pid] [-R cpu_list] [-t step] [-u target_util%] [-w cpus[:mb]]
[-x pid]``.
"""

from __future__ import annotations

import os
import sys

from .. import __version__
from ..client import ENV_SOCKET
from .advise_cmd import AdviseError, compute, parse_count

RULES = "/etc/numad-py/rules.d/"
# Flags that take a value, and why they cannot be honoured (None: honoured here).
WITH_VALUE: dict[str, str | None] = {
    "w": None,
    "l": None,
    "i": "the scan interval is [daemon] scan_interval in /etc/numad-py/numad-py.toml "
         "(numad-py runs as its own service; reload it with `systemctl reload numad-py`)",
    "u": "numad-py places by rules, not by a target utilization; see `nodes = \"auto\"` in " + RULES,
    "p": f"processes are selected by rules (match.comm, exe, cgroup, ...) in {RULES}, not by pid lists",
    "x": f"processes are excluded by [daemon] exclude or rule matches in {RULES}, not by pid lists",
    "r": f"there are no pid lists to remove from; edit the rules in {RULES}",
    "R": "reserved CPUs: leave them out of the rules' node sets instead",
    "K": "interleaved memory is never re-placed by numad-py unless a rule says so",
    "C": "numad-py counts inactive file cache as used; this cannot be changed",
    "H": "transparent hugepage scan tuning is not numad-py's to set (see /sys/kernel/mm/transparent_hugepage/)",
    "m": "there is no memory-locality target; rules say where memory belongs",
    "t": "there is no step-size setting; migration is paced by [daemon] budget and max_stall",
}
NO_VALUE: dict[str, str | None] = {
    "d": None,
    "h": None,
    "V": None,
    "S": "-S takes 0 or 1: numad-py scans only processes its rules match",
}
USAGE = ("usage: numad -w NCPUS[:MB]   (numad-py's numad front door; other numad flags are answered "
         "with how numad-py does it)")


def parse(argv: list[str]) -> list[tuple[str, str | None]]:
    """numad's getopt string ``dD:hH:i:K:l:p:r:R:S:t:u:vVw:x:`` as (flag, value) pairs."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or len(arg) < 2:
            raise AdviseError(f"unexpected argument {arg!r}")
        flag = arg[1]
        if flag in WITH_VALUE or flag == "S":
            value = arg[2:]
            if not value:
                i += 1
                if i >= len(argv):
                    raise AdviseError(f"-{flag} needs a value")
                value = argv[i]
            out.append((flag, value))
        elif flag in NO_VALUE and len(arg) == 2:
            out.append((flag, None))
        else:
            raise AdviseError(f"unknown option {arg!r}")
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        flags = parse(args)
    except AdviseError as exc:
        print(f"numad: {exc}\n{USAGE}", file=sys.stderr)
        return 1
    if not flags:
        print(f"numad: {WITH_VALUE['i']}", file=sys.stderr)
        return 1
    for flag, _ in flags:
        reason = WITH_VALUE.get(flag) if flag in WITH_VALUE else NO_VALUE.get(flag)
        if flag == "S":
            reason = NO_VALUE["S"]
        if reason:
            print(f"numad: -{flag} is not supported by numad-py: {reason}", file=sys.stderr)
            return 1
    names = [f for f, _ in flags]
    if "h" in names:
        print(USAGE)
        return 0
    if "V" in names:
        print(f"numad-py {__version__} (numad-compatible front door)")
        return 0
    advice = [v for f, v in flags if f == "w"]
    if not advice:
        return 0  # only -d / -l: numad would start its daemon; numad-py's runs as a service
    cpus_text, colon, mb_text = (advice[-1] or "").partition(":")
    try:
        cpus = parse_count(cpus_text, "CPU count")
        memory = parse_count(mb_text, "memory size in MB") << 20 if colon else 0
    except AdviseError as exc:
        print(f"numad: {exc}", file=sys.stderr)
        return 1
    data = compute(cpus, memory, os.environ.get(ENV_SOCKET))
    if not data["nodes"]:
        print(f"numad: {'; '.join(data['reasons'])}", file=sys.stderr)
        return 1
    print(data["nodelist"])  # the only line libvirt reads
    return 0


if __name__ == "__main__":
    sys.exit(main())
