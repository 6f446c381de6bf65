"""plan(snapshot, config, history) -> Plan: rules × snapshot, no I/O.

Per candidate process, in order:

1. the first matching rule wins (global include/exclude first);
2. is it *due*?  ``once`` acts at first sight (a failed attempt is retried
   after the cooldown); ``every`` re-enforces that long after the last
   check, whether it acted or found nothing to do (or after first sight
   when ``once = false``), and replaces the cooldown for its rule;
3. the target: the rule's nodes, or the auto choice, always inside the
   cgroup's cpuset.mems — an empty intersection only advises.  An auto
   rule only advises for a process whose own memory policy places it
   (numactl, ``numad-py exec``, the fork shim, the program itself): the
   admin or the application decided; a rule naming nodes still acts;
4. ``migrate`` when bytes sit outside the target (none misplaced = nothing
   to do, which makes every action idempotent), ``pin`` when ``cpus = true``
   and the affinity strays outside the targets' CPUs;
5. ``auto`` rules that are not enabled turn those into ``advise``.

Actions are ordered by rule position, pid, start time, then kind.
"""

from __future__ import annotations

from dataclasses import replace

from ..config.models import AUTO, Config, DaemonSettings, Rule
from ..units import format_size
from ..nodes import format_nodes
from . import interleave, nodesets
from .actions import KIND_ORDER, Action, Plan
from .auto import choose_node
from .history import History, ProcessHistory
from .match import first_match
from .snapshot import ProcessInfo, Snapshot
from .tiering import tier_actions


def plan(snapshot: Snapshot, config: Config, history: History) -> Plan:
    rule_position = {rule.name: i for i, rule in enumerate(config.rules)}
    inactive = inactive_rules(config.rules, snapshot)
    actions: list[Action] = []
    matched = {}
    checked = set()
    for proc in snapshot.processes:
        rule = first_match(config.rules, proc, config.daemon)
        if rule is None:
            continue
        matched[proc.identity] = rule.name
        if rule.name in inactive:
            continue
        entry = history.get(proc.identity)
        if rule.tier is not None:   # tier moves keep their own pace (hysteresis), not once/every
            actions.extend(tier_actions(proc, rule, snapshot, entry))
            continue
        due = due_by(rule, entry, snapshot.time, config.daemon.cooldown)
        if due == "every":
            checked.add(proc.identity)
        if due is not None:
            unmovable = entry.unmovable_bytes if entry is not None else 0
            planned = actions_for(proc, rule, snapshot, config.daemon, unmovable=unmovable)
            actions.extend(planned)
            if rule.nodes == AUTO:
                snapshot = claim(snapshot, proc, planned)
    actions.sort(key=lambda a: (rule_position[a.rule], a.pid, a.start_time, KIND_ORDER[a.kind]))
    return Plan(actions=tuple(actions), matched=matched, inactive=inactive, checked=frozenset(checked))


def claim(snapshot: Snapshot, proc: ProcessInfo, planned: list[Action]) -> Snapshot:
    """The snapshot as the next auto choice of this tick should see it: the node ``proc`` was
    sent to holds its memory and its threads' CPU time.  Without this every process due in
    one tick picks the same best node (seen in the VM: four busy processes, all to node 1)."""
    target = next((a.target_nodes for a in planned if a.kind in ("migrate", "advise") and a.target_nodes), None)
    if target is None or len(target) != 1 or proc.residency is None:
        return snapshot
    (node_id,) = target
    residency = proc.residency
    incoming = sum(residency.values()) - residency.get(node_id, 0)
    nodes = tuple(replace(n, mem_free=n.mem_free - incoming) if n.id == node_id
                  else replace(n, mem_free=n.mem_free + residency.get(n.id, 0)) for n in snapshot.nodes)
    cpus = len(snapshot.node(node_id).cpus) or 1
    load = dict(snapshot.cpu_load)
    load[node_id] = min(1.0, load.get(node_id, 0.0) + min(proc.threads, cpus) / cpus)
    return replace(snapshot, nodes=nodes, cpu_load=load)


def inactive_rules(rules, snapshot: Snapshot) -> dict[str, str]:
    """Rules whose node set is empty on this machine -> why: they match but never act here."""
    out = {}
    for rule in rules:
        if rule.tier is not None and snapshot.access_missing:
            out[rule.name] = f"inactive here: {snapshot.access_missing}"
        if rule.nodes == AUTO or not (nodesets.is_symbol(rule.nodes) or rule.fleet):
            continue
        if not nodesets.resolve(rule.nodes, snapshot):
            what = f"no {rule.nodes} node" if nodesets.is_symbol(rule.nodes) else f"none of nodes {rule.nodes}"
            out[rule.name] = f"inactive here: this machine has {what}"
    return out


def is_due(rule: Rule, entry: ProcessHistory | None, now: float, cooldown: float) -> bool:
    return due_by(rule, entry, now, cooldown) is not None


def due_by(rule: Rule, entry: ProcessHistory | None, now: float, cooldown: float) -> str | None:
    """Why ``rule`` looks at the process now: "once" (first sight, or a retry after the
    cooldown until an action completes), "every" (re-enforcement), or None (not due)."""
    if entry is None:
        return "once" if rule.once else None
    if rule.once and not entry.handled_once:
        return "once" if entry.last_action is None or now - entry.last_action >= cooldown else None
    if rule.every is None:
        return None
    # A check that found nothing to do counts too: else an in-place process is due (its
    # residency read afresh) every tick once the first interval has passed.
    since = [t for t in (entry.last_action, entry.last_checked) if t is not None]
    return "every" if now - max(since, default=entry.first_seen) >= rule.every else None


def actions_for(proc: ProcessInfo, rule: Rule, snapshot: Snapshot, daemon: DaemonSettings,
                *, unmovable: int = 0) -> list[Action]:
    """The actions one due process needs under ``rule`` (possibly none).

    ``unmovable``: misplaced bytes the last migration could not move; no
    migration is planned unless more than that is misplaced now.
    """
    if rule.spread_children is not None and placed_by_policy(proc.task_policy):
        # A child the fork shim placed (its task policy says so): the rule's nodes are the
        # parent's; moving the child back would undo the spreading.
        return [_action("advise", proc, rule, frozenset(),
                        f"rule {rule.name!r}: placed at fork by the shim ({proc.task_policy}); "
                        "spread children keep their node, the rule's nodes are for the parent")]
    if rule.nodes == AUTO and placed_by_policy(proc.task_policy):
        return [_action("advise", proc, rule, frozenset(),
                        f"rule {rule.name!r}: its own memory policy, {proc.task_policy}, places it (set by "
                        "numactl, numad-py exec, the fork shim or the program); auto does not override "
                        "a policy, a rule naming nodes would")]
    target, target_why = _target(proc, rule, snapshot)
    if not target:
        return [_action("advise", proc, rule, frozenset(), f"rule {rule.name!r}: {target_why}; not acting")]
    if rule.policy is not None and rule.policy.spec().spreads_pages():
        actions = _split_actions(proc, rule, snapshot, target, unmovable)
    else:
        actions = _memory_actions(proc, rule, snapshot, target, target_why, unmovable)
    if rule.cpus:
        actions.extend(_cpu_actions(proc, rule, snapshot, target))
    if rule.nodes == AUTO and not rule.is_auto_enabled(daemon):
        return [_as_advice(a) for a in actions]
    return actions


def reads_task_policy(rule: Rule) -> bool:
    """Whether the planner needs a candidate's task memory policy under ``rule``: to tell the
    fork shim's children apart (spread_children), or to leave a placed process alone (auto)."""
    return rule.spread_children is not None or rule.nodes == AUTO


# numa_maps' words for a task policy that places nothing: the kernel's default, and "local"
# (allocate where the thread runs), which a placement of CPUs and memory together keeps.
UNPLACED_POLICIES = ("default", "local")


def placed_by_policy(task_policy: str | None) -> bool:
    """A task policy (numa_maps' text: "bind:1", "prefer=static:0", "interleave:0-1", ...) that
    says where the memory goes; None (not read) is not."""
    if task_policy is None:
        return False
    mode = task_policy.split(":", 1)[0].split("=", 1)[0]   # "<mode>[=<flags>][:<nodes>]"
    return mode not in UNPLACED_POLICIES


def _target(proc: ProcessInfo, rule: Rule, snapshot: Snapshot) -> tuple[frozenset[int], str]:
    """The nodes to place on and a phrase saying why (or why there are none)."""
    allowed = snapshot.node_ids if proc.mems_allowed is None else snapshot.node_ids & proc.mems_allowed
    # Said only where the cpuset leaves a node out: an unconfined process is allowed every node.
    confined = proc.mems_allowed is not None and not snapshot.node_ids <= proc.mems_allowed
    limit = f" (cgroup cpuset.mems allows {format_nodes(proc.mems_allowed or frozenset()) or 'none'})" if confined else ""
    if rule.nodes == AUTO:
        choice = choose_node(snapshot, proc, allowed)
        if choice is None:
            return frozenset(), f"auto found no node with CPUs and room for {format_size(proc.rss)}{limit}"
        return frozenset({choice.node}), choice.why
    wanted = nodesets.resolve(rule.nodes, snapshot)
    target = wanted & allowed
    if not target:
        asked = rule.nodes if nodesets.is_symbol(rule.nodes) else f"node {format_nodes(wanted) or rule.nodes}"
        return frozenset(), f"targets {asked}, none of which is usable{limit or ' (not online)'}"
    if target != wanted:
        return target, f"target node {format_nodes(target)} (rule asks {format_nodes(wanted)}){limit}"
    source = f"the rule's {rule.nodes} set" if nodesets.is_symbol(rule.nodes) else "the rule"
    return target, f"target node {format_nodes(target)} from {source}"


def _memory_actions(
    proc: ProcessInfo, rule: Rule, snapshot: Snapshot, target: frozenset[int], target_why: str,
    unmovable: int = 0,
) -> list[Action]:
    if proc.residency is None:
        reason = f"rule {rule.name!r}: cannot tell where its memory is (numa_maps unreadable); not moving blindly"
        return [_action("advise", proc, rule, target, reason)]
    misplaced_by_node = {n: b for n, b in proc.residency.items() if n not in target and b > 0}
    misplaced = sum(misplaced_by_node.values())
    if misplaced <= unmovable:
        return []  # placed, or only what the kernel already refused to move
    on_nodes = ", ".join(f"{format_size(b)} on node {n}" for n, b in sorted(misplaced_by_node.items()))
    reason = (
        f"rule {rule.name!r}: {format_size(misplaced)} of {format_size(sum(proc.residency.values()))} "
        f"resident is outside node {format_nodes(target)} ({on_nodes}); {target_why}"
    )
    if rule.memory != "all":
        reason += f"; moves only {', '.join(rule.memory)} (the count is for the whole process)"
    reason += _balancing_note(rule, snapshot)
    return [
        _action(
            "migrate", proc, rule, target, reason,
            from_nodes=frozenset(misplaced_by_node), misplaced_bytes=misplaced,
        )
    ]


def _split_actions(proc: ProcessInfo, rule: Rule, snapshot: Snapshot, target: frozenset[int],
                   unmovable: int) -> list[Action]:
    """Interleave policies: move pages until each node holds its weighted share."""
    assert rule.policy is not None
    spec = rule.policy.spec()
    weights = {n: w for n, w in spec.weight_map().items() if n in target}
    if proc.residency is None:
        reason = f"rule {rule.name!r}: cannot tell where its memory is (numa_maps unreadable); not moving blindly"
        return [_action("advise", proc, rule, target, reason)]
    resident = sum(proc.residency.values())
    excess = interleave.excess_by_node(dict(proc.residency), weights)
    if interleave.split_is_placed(sum(excess.values()), resident, unmovable):
        return []
    reason = (f"rule {rule.name!r}: {format_size(sum(excess.values()))} of {format_size(resident)} resident is "
              f"off its share: {interleave.describe_split(dict(proc.residency), weights)}"
              f"{interleave.new_allocations_note(spec)}{_balancing_note(rule, snapshot)}")
    return [replace(_action("migrate", proc, rule, frozenset(weights), reason, from_nodes=frozenset(excess),
                            misplaced_bytes=sum(excess.values())), weights=tuple(sorted(weights.items())))]


def _cpu_actions(proc: ProcessInfo, rule: Rule, snapshot: Snapshot, target: frozenset[int]) -> list[Action]:
    cpus = snapshot.cpus_of(target)
    if not cpus:
        reason = f"rule {rule.name!r}: node {format_nodes(target)} has no CPUs; threads are not pinned"
        return [_action("advise", proc, rule, target, reason)]
    if proc.cpu_affinity is not None and proc.cpu_affinity <= cpus:
        return []
    now_on = "unknown CPUs" if proc.cpu_affinity is None else f"CPUs {format_nodes(proc.cpu_affinity)}"
    reason = (
        f"rule {rule.name!r}: {proc.threads} thread(s) may run on {now_on}, "
        f"outside node {format_nodes(target)}'s CPUs {format_nodes(cpus)}"
    )
    return [_action("pin", proc, rule, target, reason)]


def _balancing_note(rule: Rule, snapshot: Snapshot) -> str:
    if not snapshot.numa_balancing:
        return ""
    if rule.numa_balancing is False:
        return (f"; kernel NUMA balancing is on (mode {snapshot.numa_balancing}) and the rule wants it off, "
                "which cannot be done for a running process from outside: it may move pages back "
                "(a process started through `numad-py exec` with an explicit policy is left alone by it)")
    return f"; kernel NUMA balancing is on (mode {snapshot.numa_balancing}) and may move pages back"


def _as_advice(action: Action) -> Action:
    if action.kind == "advise":
        return action
    hint = "advice only: set auto = true in the rule or [daemon] to let it act"
    return replace(action, kind="advise", reason=f"would {action.kind}: {action.reason}; {hint}")


def _action(
    kind: str,
    proc: ProcessInfo,
    rule: Rule,
    target: frozenset[int],
    reason: str,
    *,
    from_nodes: frozenset[int] = frozenset(),
    misplaced_bytes: int = 0,
) -> Action:
    return Action(
        kind=kind,  # type: ignore[arg-type]
        pid=proc.pid,
        start_time=proc.start_time,
        comm=proc.comm,
        rule=rule.name,
        target_nodes=target,
        memory=rule.memory if rule.memory == "all" else tuple(rule.memory),
        move_all=rule.move_all,
        from_nodes=from_nodes,
        misplaced_bytes=misplaced_bytes,
        reason=reason,
        numa_balancing=rule.numa_balancing,
    )
