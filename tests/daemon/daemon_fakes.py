"""Fakes to drive the daemon's loop on the host: everything the composition root would build."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from numad_py.act.executor import Outcome
from numad_py.config import load_config
from numad_py.daemon.service import Daemon
from numad_py.daemon.watchdog import Heartbeat
from numad_py.decide.actions import Action, Plan
from numad_py.metrics import Metrics

IDENT = (4242, 1700000000.0)


def write_config(tmp: Path, *, scan_interval: str = "5s", rules: str = "", extra: str = "") -> Path:
    path = tmp / "numad-py.toml"
    (tmp / "rules.d").mkdir(exist_ok=True)
    path.write_text(f'[daemon]\nscan_interval = "{scan_interval}"\nruntime_dir = "{tmp}/run"\n{extra}\n'
                    '[metrics]\nlisten = ""\n'
                    f'[control]\nsocket = "{tmp}/run/control.sock"\n' + rules)
    return path


RULE = '[[rule]]\nname = "db"\nmatch.comm = "postgres"\nnodes = "0"\n'


@dataclass
class FakeSnapshot:
    time: float = 1.0
    nodes: tuple = ()
    processes: tuple = ()
    numa_balancing: int | None = 0


def action(kind: str = "migrate", target=frozenset({0}), reason: str = "") -> Action:
    return Action(kind=kind, pid=IDENT[0], start_time=IDENT[1], comm="postgres", rule="db",
                  target_nodes=frozenset(target), reason=reason)


class FakeNotifier:
    watchdog_interval = None

    def __init__(self):
        self.sent: list[str] = []

    def ready(self, status): self.sent.append("READY=1")
    def reloading(self): self.sent.append("RELOADING=1")
    def stopping(self): self.sent.append("STOPPING=1")
    def status(self, text): self.sent.append(f"STATUS={text}")
    def watchdog(self): self.sent.append("WATCHDOG=1")


@dataclass
class FakeExecutor:
    """Records what it is asked; ``fail`` raises from execute, ``work`` runs inside it."""

    calls: list = field(default_factory=list)
    reconfigured: list = field(default_factory=list)
    fail: BaseException | None = None
    work: object = None

    def execute(self, act, *, reason="schedule", uid=None, progress=None, cancelled=None) -> Outcome:
        self.calls.append((act, reason))
        if self.work is not None:
            self.work()                  # type: ignore[operator]
        if self.fail is not None:
            raise self.fail
        return Outcome(kind=act.kind, pid=act.pid, comm=act.comm, rule=act.rule,
                       target=act.target_nodes, status="done")

    def reconfigure(self, **kw):
        self.reconfigured.append(kw)


class Script:
    """sense/decide/publish callables that fail on the ticks listed in ``fail_on``."""

    def __init__(self, plan_actions=(), fail_on: dict[str, dict[int, BaseException]] | None = None):
        self.plan_actions = tuple(plan_actions)
        self.fail_on = fail_on or {}
        self.counts = {"sense": 0, "decide": 0, "publish": 0}

    def _step(self, stage: str) -> None:
        self.counts[stage] += 1
        exc = self.fail_on.get(stage, {}).get(self.counts[stage])
        if exc is not None:
            raise exc

    def sense(self, config):
        self._step("sense")
        return FakeSnapshot()

    def decide(self, snapshot, config, history):
        self._step("decide")
        return Plan(actions=self.plan_actions, matched={a.identity: a.rule for a in self.plan_actions})

    def publish(self, snapshot, config):
        self._step("publish")


def make_daemon(tmp: Path, *, script: Script | None = None, executor=None, loader=None, notifier=None,
                heartbeat=None, status_file=None, scan_interval: str = "5s", metrics=True, **kw) -> Daemon:
    path = write_config(tmp, scan_interval=scan_interval, rules=RULE)
    script = script or Script()
    notifier = notifier or FakeNotifier()
    return Daemon(
        config=load_config(path, online_nodes=None), config_path=str(path),
        load_config=loader or (lambda: load_config(path, online_nodes=None)),
        sense=script.sense, decide=script.decide, executor=executor or FakeExecutor(),
        notifier=notifier, heartbeat=heartbeat or Heartbeat(notifier), stop_event=threading.Event(),
        publishers=[script.publish], status_file=status_file,
        metrics=Metrics(sys_root=None) if metrics else None, **kw)


def tick_errors(metrics: Metrics) -> dict[str, float]:
    out = {}
    for fam in metrics.registry.collect():
        for s in fam.samples:
            if s.name == "numad_tick_errors_total":
                out[s.labels["stage"]] = s.value
    return out
