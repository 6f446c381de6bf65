"""Where the memory a rule manages is resident, per node.

The planner compares this with the rule's target, so it must count only
what the rule would move: a rule that moves ``[heap]`` must not see the
process's libraries left on another node as "drifted", or ``every`` would
plan the same migration on each pass.

Named mappings come from numa_maps (cheap: one read); explicit address
ranges need a ``move_pages`` query, because numa_maps only sums whole
mappings and a range may cover part of one.
"""

from __future__ import annotations

from ..selectors import selected_mappings, split_selectors
from .maps import mappings_residency, read_maps, read_numa_maps


def memory_residency(pid: int, memory, proc_root: str = "/proc") -> dict[int, int]:
    """Bytes per node of what ``memory`` ("all" or a rule's selectors) names in ``pid``."""
    explicit, named = split_selectors(memory)
    total: dict[int, int] = {}
    if named:
        numa_maps = read_numa_maps(pid, proc_root)
        starts = None if "all" in named else {m.start for m in selected_mappings(read_maps(pid, proc_root), named)}
        total = mappings_residency(numa_maps, starts)
    if explicit:
        from ..numa import range_residency   # the cffi binding, only when a rule names ranges
        for start, end in explicit:
            for node, nbytes in range_residency(pid, start, end)["nodes"].items():
                total[node] = total.get(node, 0) + nbytes
    return total
