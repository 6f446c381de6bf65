"""``numad-py weights``: show or set the machine's weighted-interleave weights.

Linux (6.9+) keeps one table for the whole machine
(/sys/kernel/mm/mempolicy/weighted_interleave/nodeN); every
weighted-interleave policy, set by any program, uses it.  Setting needs root.
"""

from __future__ import annotations

import sys

from .argv import ArgumentParser, Namespace


def add_weights_arguments(p: ArgumentParser) -> None:
    p.add_argument("--set", metavar="NODE:W,...", help="set these nodes' weights (1-255), e.g. 0:3,1:1; root only")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_weights)


def cmd_weights(args: Namespace) -> int:
    from ..errors import NumaError
    from ..numa.weights import read_weights, write_weights
    from ..policyspec import PolicySpecError, parse_weights

    try:
        if args.set is not None:
            table = write_weights(parse_weights(args.set))
        else:
            table = read_weights()
    except PolicySpecError as exc:
        print(f"numad-py weights: {exc}", file=sys.stderr)
        return 2
    except NumaError as exc:
        print(f"numad-py weights: {exc}", file=sys.stderr)
        return 1
    if args.json:
        import json
        print(json.dumps({str(n): w for n, w in table.items()}, indent=2))
        return 0
    print("weighted-interleave weights (one table for the whole machine):")
    for node, weight in table.items():
        print(f"  node {node}: {weight}")
    return 0
