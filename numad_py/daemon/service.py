"""The daemon: one composition root and the sense -> decide -> act loop.

Signal handlers only set flags and wake the loop (tuned's habit): SIGHUP
asks for a reload, SIGTERM/SIGINT for a stop.  A SIGHUP that arrives while
a reload runs sets the flag again, so it folds into exactly one more reload.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..act.executor import Executor, Outcome
from ..act.pacing import Pacer, StallBound
from ..config import AUTO, ConfigError, load_config
from ..decide.history import History, record
from ..decide.planner import plan as make_plan
from ..sense.processes import Sensor, take_snapshot
from ..shim import publish_node_table, publish_shim_rules
from ..topology import online_nodes, read_topology
from ..control.server import ControlServer
from .notify import Notifier
from .runtime import privilege_limits, usable_dir

log = logging.getLogger("numad_py.daemon")

RECENT_OUTCOMES = 50


@dataclass
class DaemonState:
    """What the daemon remembers between ticks; plain data, handed to the planner."""

    history: History = field(default_factory=dict)
    advised: dict = field(default_factory=dict)       # identity -> last advice logged
    recent: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ticks: int = 0
    last_tick: float | None = None
    last_reload: float | None = None
    managed: dict[str, int] = field(default_factory=dict)  # rule -> processes matched


class Daemon:
    def __init__(self, config_path: str, *, dry_run: bool = False, notifier: Notifier | None = None):
        self.config_path = config_path
        self.dry_run = dry_run
        self.config = load_config(Path(config_path), online_nodes=online_nodes())
        self.metrics = self._build_metrics()
        self._metrics_server = None
        self.notifier = notifier or Notifier()
        self.state = DaemonState(last_reload=time.time())
        self.stop_event = threading.Event()
        self._wake = threading.Event()
        self._reload_requested = False
        self.runtime_dir = usable_dir(self.config.daemon.runtime_dir, "runtime files")
        self.sensor = Sensor()
        self.executor = self._build_executor()
        self.control = ControlServer.from_daemon(self)
        self.on_tick = [self._publish_for_shim]  # callables(snapshot) run after each tick
        self._metrics_view: dict | None = None
        if self.metrics is not None:
            self.metrics.record_reload(True, self.state.last_reload)

    def _build_metrics(self):
        """Event counters and the collector; none at all when the endpoint is disabled."""
        if not self.config.metrics.listen:
            return None
        from ..metrics import Metrics  # prometheus_client is only needed with an endpoint
        return Metrics(state_provider=self.metrics_state)

    def _build_executor(self) -> Executor:
        d = self.config.daemon
        return Executor(
            topology=read_topology,
            pacer=Pacer(d.budget),
            stall=StallBound(d.max_stall),
            dry_run=self.dry_run,
            metrics=self.metrics,
            stop=self.stop_event,
        )

    # --- signals: only forward ------------------------------------------

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        signal.signal(signal.SIGINT, lambda *_: self.request_stop())

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    def request_stop(self) -> None:
        self.stop_event.set()
        self._wake.set()

    # --- the loop ----------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        for limit in privilege_limits():
            log.warning("running as uid %d with %s", os.getuid(), limit)
        log.info("numad-py started: %d rule(s) from %s%s", len(self.config.rules), self.config_path,
                 " (dry-run: nothing will be changed)" if self.dry_run else "")
        self.control.start()
        if self.metrics is not None:
            from ..metrics import start_http_server
            self._metrics_server = start_http_server(self.config.metrics.listen, self.metrics)
        self.notifier.ready(f"{len(self.config.rules)} rules")
        try:
            while not self.stop_event.is_set():
                if self._reload_requested:
                    self._reload()
                self.tick()
                if once:
                    break
                self._sleep_until_next_tick()
        finally:
            self.notifier.stopping()
            self.control.stop()
            if self._metrics_server is not None:
                self._metrics_server.close()
            log.info("numad-py stopping after %d tick(s)", self.state.ticks)
        return 0

    def _sleep_until_next_tick(self) -> None:
        deadline = time.monotonic() + self.config.daemon.scan_interval
        while not self.stop_event.is_set() and not self._reload_requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            step = min(remaining, self.notifier.watchdog_interval or remaining)
            if self._wake.wait(step):
                self._wake.clear()
            self.notifier.watchdog()

    def tick(self) -> None:
        t0 = time.monotonic()
        snapshot = self.sensor.snapshot(self.config)
        plan = make_plan(snapshot, self.config, self.state.history)
        attempted, completed, unmovable = [], [], {}
        for action in plan:
            if self.stop_event.is_set():
                break
            if action.kind == "advise":
                self._advise(action)
                continue
            outcome = self.executor.execute(action, reason=self._reason(action))
            attempted.append(action)
            if outcome.status in ("done", "dry-run"):
                completed.append(action)
                if outcome.result is not None and action.kind == "migrate":
                    unmovable[action.identity] = outcome.result.refused_bytes
            self._remember(action, outcome)
        self.state.history = record(self.state.history, plan, snapshot.time,
                                    attempted=attempted, completed=completed, unmovable=unmovable)
        # Forget advice given to processes that are gone or no longer match.
        self.state.advised = {k: v for k, v in self.state.advised.items() if k in self.state.history}
        self.state.ticks += 1
        self.state.last_tick = time.time()
        self.state.managed = _count_by_rule(plan.matched.values())
        self._metrics_view = _rule_view(snapshot, plan, self.config)
        for hook in self.on_tick:
            hook(snapshot)
        if self.metrics is not None:
            self.metrics.record_scan(time.monotonic() - t0)
        self.write_state()
        self.notifier.status(f"tick {self.state.ticks}: {len(plan)} action(s), "
                             f"{len(plan.matched)} managed process(es)")
        self.notifier.watchdog()

    def _publish_for_shim(self, snapshot) -> None:
        """What the fork shim reads without talking to the daemon: free memory per node
        (least-loaded choice) and the rules naming programs whose children spread."""
        publish_node_table(
            self.runtime_dir / "node-table",
            {n.id: n.mem_free for n in snapshot.nodes},
            total_bytes_by_node={n.id: n.mem_total for n in snapshot.nodes},
            cpu_nodes=[n.id for n in snapshot.nodes if n.has_cpu],
            # A daemon that stops refreshing must not steer forks forever.
            valid_for=3 * self.config.daemon.scan_interval,
        )
        # Which programs spread their children (rules with spread_children), for
        # preloaded shims to read at start-up; rewritten only when it changes.
        d = self.config.daemon
        publish_shim_rules(self.runtime_dir / "shim-rules", self.config.rules,
                           include=d.include, exclude=d.exclude,
                           table_path=self.runtime_dir / "node-table")

    def _advise(self, action) -> None:
        """Log advice once per process and reason, not on every tick."""
        if self.state.advised.get(action.identity) != action.reason:
            self.state.advised[action.identity] = action.reason
            log.info("advice pid=%d comm=%s rule=%s: %s", action.pid, action.comm, action.rule, action.reason)

    def _reason(self, action) -> str:
        """The metrics' reason label: rules with nodes = "auto" act as "auto"."""
        rule = next((r for r in self.config.rules if r.name == action.rule), None)
        return "auto" if rule is not None and rule.nodes == AUTO else "schedule"

    def _remember(self, action, outcome: Outcome) -> None:
        if outcome.status in ("skipped", "retry") and outcome.message:
            self.state.errors = (self.state.errors + [f"pid {action.pid} ({action.comm}): {outcome.message}"])[-20:]
        self.state.recent = (self.state.recent + [outcome])[-RECENT_OUTCOMES:]

    def _reload(self) -> None:
        """Load the config again; a broken one is logged and the old one keeps running."""
        self._reload_requested = False
        self.notifier.reloading()
        try:
            new = load_config(Path(self.config_path), online_nodes=online_nodes())
        except ConfigError as exc:
            log.error("reload failed, keeping the previous %d rule(s):\n%s", len(self.config.rules), exc)
            self.state.errors = (self.state.errors + [f"reload failed: {exc}"])[-20:]
            if self.metrics is not None:
                self.metrics.record_reload(False, time.time())
        else:
            self.config = new
            self.executor = self._build_executor()
            self.state.last_reload = time.time()
            log.info("reloaded: %d rule(s) from %s", len(new.rules), self.config_path)
            if self.metrics is not None:
                self.metrics.record_reload(True, self.state.last_reload)
        self.notifier.ready(f"{len(self.config.rules)} rules")

    # --- status --------------------------------------------------------------

    def plan_preview(self) -> dict:
        """What the daemon would do now, without doing it (the control socket's `plan`).

        A one-off snapshot, so the loop's CPU-load baseline is left alone.
        """
        actions = make_plan(take_snapshot(self.config), self.config, self.state.history)
        return {"actions": [a.to_dict() for a in actions]}

    def metrics_state(self) -> dict | None:
        """For the metrics collector: the last scan's view per rule (None before the first)."""
        return self._metrics_view

    def status(self) -> dict:
        return {
            "pid": os.getpid(),
            "config": self.config_path,
            "dry_run": self.dry_run,
            "rules": [r.name for r in self.config.rules],
            "managed": self.state.managed,
            "ticks": self.state.ticks,
            "last_tick": self.state.last_tick,
            "last_reload": self.state.last_reload,
            "recent": [o.to_dict() for o in self.state.recent[-20:]],
            "errors": self.state.errors,
        }

    def write_state(self) -> None:
        """status.json under the runtime dir: read by `numad-py status` (atomic rename)."""
        path = self.runtime_dir / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), indent=2))
        os.replace(tmp, path)


def _count_by_rule(rule_names) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in rule_names:
        counts[name] = counts.get(name, 0) + 1
    return counts


def _rule_view(snapshot, plan, config) -> dict:
    """Per rule: processes managed and their resident bytes by node, from the last snapshot."""
    rules = {r.name: {"processes": 0, "resident_bytes": {}} for r in config.rules}
    by_identity = {p.identity: p for p in snapshot.processes}
    for identity, rule_name in plan.matched.items():
        entry = rules.setdefault(rule_name, {"processes": 0, "resident_bytes": {}})
        entry["processes"] += 1
        proc = by_identity.get(identity)
        for node, nbytes in ((proc.residency or {}).items() if proc else ()):
            entry["resident_bytes"][node] = entry["resident_bytes"].get(node, 0) + nbytes
    return {"time": snapshot.time, "numa_balancing": snapshot.numa_balancing,
            "processes": len(plan.matched), "rules": rules}
