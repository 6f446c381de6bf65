"""``numad-py shim install-system | uninstall-system``: the shim in /etc/ld.so.preload.

The logic is numad_py/shim/system.py; this module parses and prints.  Exit
codes: 0 done (or nothing to do), 1 refused or failed (one line on stderr,
the file unchanged).
"""

from __future__ import annotations

import sys

from .argv import ArgumentParser, Namespace


def add_shim_arguments(p: ArgumentParser) -> None:
    sub = p.add_subparsers(dest="shim_command", required=True, metavar="ACTION")
    for name, help_text in (
            ("install-system", "add the shim to /etc/ld.so.preload: every new dynamically linked process "
                               "loads it, the daemon's rules decide whose children are placed"),
            ("uninstall-system", "remove the shim from /etc/ld.so.preload (other entries stay)")):
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("--root", default="/", metavar="DIR",
                       help="edit DIR/etc/ld.so.preload instead of /etc/ld.so.preload (tests, images)")
        q.add_argument("--library", default=None, metavar="PATH",
                       help="the shim library to name (default: `numad-py shim-path`)")
        q.add_argument("--json", action="store_true", help="print what was done as an object")
        q.set_defaults(func=cmd_shim)


def cmd_shim(args: Namespace) -> int:
    from ..shim.locate import ShimError
    from ..shim.system import install_system, uninstall_system

    action = install_system if args.shim_command == "install-system" else uninstall_system
    try:
        change = action(args.root, args.library)
    except ShimError as exc:
        print(f"numad-py shim {args.shim_command}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        import json
        print(json.dumps({"path": str(change.path), "library": change.library, "action": change.action,
                          "file_removed": change.file_removed}, indent=2))
    else:
        print(change.describe())
    return 0
