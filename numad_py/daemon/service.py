"""The daemon's loop: sense -> decide -> act, every scan interval, behind an error boundary.

The :class:`Daemon` builds nothing: :func:`numad_py.daemon.compose.build_daemon`
hands it every collaborator, so the loop runs on the host with fakes.

Signal handlers only set flags and wake the loop (tuned's habit): SIGHUP
asks for a reload, SIGTERM/SIGINT for a stop; the loop waits on the stop
event, so a stop ends it within one interval.  A SIGHUP that arrives while a
reload runs sets the flag again, so it folds into exactly one more reload.

Any exception from a stage of a tick (sense, decide, one action, a
publisher, the status or history file) is logged with its stage, counted in
``numad_tick_errors_total{stage}``, and the loop goes on (systemd-oomd's
habit).  A reload that fails for any reason keeps the rules running.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..act.executor import Outcome
from ..config import AUTO, ConfigError, Config
from ..decide.history import record
from .endpoints import StartupError, start_all, stop_all
from .state import DaemonState, count_by_rule, rule_view

log = logging.getLogger("numad_py.daemon")

# Sleep in slices no longer than this: a huge scan_interval ("3000000h") never
# reaches a timeout the C library cannot hold, and the loop stays responsive.
MAX_SLEEP_SLICE = 60.0
ERRORS_KEPT = 20


class Daemon:
    def __init__(
        self,
        *,
        config: Config,
        config_path: str,
        load_config: Callable[[], Config],          # reload: may raise anything
        sense: Callable[[Config], Any],              # -> Snapshot
        decide: Callable[[Any, Config, Any], Any],   # (snapshot, config, history) -> Plan
        executor,                                    # .execute(action, reason=), .reconfigure(...)
        notifier,
        heartbeat,
        stop_event: threading.Event,
        publishers: Sequence[Callable[[Any, Config], None]] = (),
        status_file=None,                            # .write(dict), .remove()
        history_store=None,                          # .load(), .save(history)
        metrics=None,
        preview_sense: Callable[[Config], Any] | None = None,
        endpoints: Sequence = (),                    # .start(), .stop(); started in order
        dry_run: bool = False,
        identity: dict | None = None,                # pid, start_time, socket... for the status file
        config_changed: Callable[[], bool] | None = None,  # for [daemon] reload_on_change
    ):
        self.config = config
        self.config_path = config_path
        self._load_config = load_config
        self._sense = sense
        self._decide = decide
        self.executor = executor
        self.notifier = notifier
        self.heartbeat = heartbeat
        self.stop_event = stop_event
        self.publishers = list(publishers)
        self.status_file = status_file
        self.history_store = history_store
        self.metrics = metrics
        self._preview_sense = preview_sense or sense
        self.endpoints = list(endpoints)
        self.dry_run = dry_run
        self.identity = dict(identity or {"pid": os.getpid()})
        self._config_changed = config_changed
        self._inactive: dict[str, str] = {}
        self.state = DaemonState(last_reload=time.time())
        if history_store is not None:
            self.state.history = history_store.load()
        self._wake = threading.Event()
        self._reload_requested = False
        self._last_error: dict[str, str] = {}
        self._tick_no = 0                            # the tick running now, for messages
        if metrics is not None:
            metrics.record_reload(True, self.state.last_reload)

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
        """Serve until stopped; 1 (with one logged line) if an endpoint cannot start."""
        try:
            started = start_all(self.endpoints)
        except StartupError as exc:
            log.error("%s", exc)
            return 1
        log.info("numad-py started: %d rule(s) from %s%s", len(self.config.rules), self.config_path,
                 " (dry-run: nothing will be changed)" if self.dry_run else "")
        self.notifier.ready(f"{len(self.config.rules)} rules")
        self.heartbeat.start()
        if self.status_file is not None:     # `numad-py status` answers before the first tick ends
            self._attempt("status", self.status_file.write, self.status())
        try:
            while not self.stop_event.is_set():
                if self._policy_files_changed():
                    log.info("policy files changed: reloading")
                    self._reload_requested = True
                if self._reload_requested:
                    self._reload()
                self.tick()
                if once:
                    break
                self._sleep_until_next_tick()
        finally:
            self.notifier.stopping()
            self.heartbeat.stop()
            stop_all(started)
            if self.status_file is not None:
                self._attempt("status", self.status_file.remove)
            log.info("numad-py stopping after %d tick(s)", self.state.ticks)
        return 0

    def _policy_files_changed(self) -> bool:
        if not self.config.daemon.reload_on_change or self._config_changed is None:
            return False
        ok, changed = self._attempt("reload", self._config_changed)
        return bool(ok and changed)

    def _sleep_until_next_tick(self) -> None:
        deadline = time.monotonic() + self.config.daemon.scan_interval
        while not self.stop_event.is_set() and not self._reload_requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.heartbeat.beat()
            if self._wake.wait(min(remaining, self.heartbeat.ping_every or MAX_SLEEP_SLICE, MAX_SLEEP_SLICE)):
                self._wake.clear()

    def _attempt(self, stage: str, fn: Callable, *args) -> tuple[bool, Any]:
        """The error boundary: run one stage; a failure is logged, counted, and returned as False."""
        self.heartbeat.beat()
        try:
            return True, fn(*args)
        except Exception as exc:
            self._tick_error(stage, exc)
            return False, None

    def _tick_error(self, stage: str, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if self.metrics is not None:
            self.metrics.record_tick_error(stage)
        self.state.errors = (self.state.errors + [f"tick {self._tick_no} {stage}: {text}"])[-ERRORS_KEPT:]
        # The same failure every tick is logged once (then at debug level), not every interval.
        if self._last_error.get(stage) == text:
            log.debug("tick %d: %s failed again: %s", self._tick_no, stage, text, exc_info=exc)
        else:
            self._last_error[stage] = text
            log.error("tick %d: %s failed, the daemon goes on: %s", self._tick_no, stage, text)
            log.debug("traceback of the %s failure", stage, exc_info=exc)

    def tick(self) -> None:
        t0 = time.monotonic()
        self._tick_no = self.state.ticks + 1
        # One config for the whole tick: a snapshot carries only the facts its rules' matches
        # read, so it is planned against the rules it was taken for, even across a reload.
        config = self.config
        ok, snapshot = self._attempt("sense", self._sense, config)
        if ok:
            ok, plan = self._attempt("decide", self._decide, snapshot, config, self.state.history)
        if ok:
            self._act(plan, snapshot)
            self.state.managed = count_by_rule(plan.matched.values())
            self.state.metrics_view = rule_view(snapshot, plan, config)
            self._note_inactive(plan.inactive)
            for publish in self.publishers:
                self._attempt("publish", publish, snapshot, config)
            if self.history_store is not None and not self.dry_run:
                self._attempt("state", self.history_store.save, self.state.history)
            if self.metrics is not None:
                self.metrics.record_scan(time.monotonic() - t0)
        self.state.ticks += 1
        self.state.last_tick = time.time()
        if self.status_file is not None:
            self._attempt("status", self.status_file.write, self.status())
        if ok:
            self.notifier.status(f"tick {self.state.ticks}: {len(plan)} action(s), "
                                 f"{len(plan.matched)} managed process(es)")

    def _note_inactive(self, inactive) -> None:
        """One log line when a rule becomes inactive on this machine (or active again)."""
        for name, why in sorted(inactive.items()):
            if self._inactive.get(name) != why:
                log.info("rule %r is %s", name, why)
        for name in sorted(set(self._inactive) - set(inactive)):
            log.info("rule %r is active again", name)
        self._inactive = dict(inactive)

    def _act(self, plan, snapshot) -> None:
        attempted, completed, unmovable = [], [], {}
        for action in plan:
            if self.stop_event.is_set():
                break
            if action.kind == "advise":
                self._advise(action)
                continue
            attempted.append(action)
            ok, outcome = self._attempt("act", self._execute, action)
            if not ok:
                continue
            tier = getattr(action, "tier", None)
            # a dry-run tier move moved nothing: remembering it would hold the range back (dwell)
            if outcome.status == "done" or (outcome.status == "dry-run" and tier is None):
                completed.append(action)
                if self.metrics is not None and tier is not None:
                    moved = outcome.result.bytes_moved if outcome.result is not None else 0
                    self.metrics.record_tier_move(action.rule, tier, moved)
                if outcome.result is not None and action.kind == "migrate":
                    unmovable[action.identity] = outcome.result.refused_bytes
            self._remember(action, outcome)
        self.state.history = record(self.state.history, plan, snapshot.time,
                                    attempted=attempted, completed=completed, unmovable=unmovable)
        # Forget advice given to processes that are gone or no longer match.
        self.state.advised = {k: v for k, v in self.state.advised.items() if k in self.state.history}

    def _execute(self, action) -> Outcome:
        return self.executor.execute(action, reason=self._reason(action))

    def _advise(self, action) -> None:
        """Log advice once per process and advised node set: the reason text carries live
        scores and load, which change every tick (issue 18 item 16)."""
        if self.state.advised.get(action.identity) != action.target_nodes:
            self.state.advised[action.identity] = action.target_nodes
            log.info("advice pid=%d comm=%s rule=%s: %s", action.pid, action.comm, action.rule, action.reason)

    def _reason(self, action) -> str:
        """The metrics' reason label: rules with nodes = "auto" act as "auto"."""
        rule = next((r for r in self.config.rules if r.name == action.rule), None)
        return "auto" if rule is not None and rule.nodes == AUTO else "schedule"

    def _remember(self, action, outcome: Outcome) -> None:
        if outcome.status in ("skipped", "retry") and outcome.message:
            self.state.errors = (self.state.errors + [f"pid {action.pid} ({action.comm}): {outcome.message}"])[-ERRORS_KEPT:]
        self.state.remember(outcome)

    def _reload(self) -> None:
        """Load the config again; whatever is wrong with it, the old rules keep running."""
        self._reload_requested = False
        self.notifier.reloading()
        self.heartbeat.beat()
        try:
            new = self._load_config()
            self.executor.reconfigure(budget=new.daemon.budget, max_stall=new.daemon.max_stall)
        except Exception as exc:
            self._reload_failed(exc)
        else:
            _warn_restart_only(self.config, new)
            self.config = new
            self.state.last_reload = time.time()
            log.info("reloaded: %d rule(s) from %s", len(new.rules), self.config_path)
            if self.metrics is not None:
                self.metrics.record_reload(True, self.state.last_reload)
        self.notifier.ready(f"{len(self.config.rules)} rules")

    def _reload_failed(self, exc: Exception) -> None:
        kept = f"reload failed, keeping the previous {len(self.config.rules)} rule(s)"
        if isinstance(exc, ConfigError) and len(exc.problems) > 1:
            log.error("%s:\n%s", kept, exc)
        else:
            text = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
            log.error("%s: %s", kept, _one_line(text))
        self.state.errors = (self.state.errors + [f"reload failed: {_one_line(str(exc))}"])[-ERRORS_KEPT:]
        if self.metrics is not None:
            self.metrics.record_reload(False, time.time())

    # --- status --------------------------------------------------------------

    def plan_preview(self) -> dict:
        """What the daemon would do now, without doing it (the control socket's `plan`).

        A one-off snapshot, so the loop's CPU-load baseline is left alone.
        """
        actions = self._decide(self._preview_sense(self.config), self.config, self.state.history)
        return {"actions": [a.to_dict() for a in actions]}

    def metrics_state(self) -> dict | None:
        """For the metrics collector: the last scan's view per rule (None before the first)."""
        return self.state.metrics_view

    def status(self) -> dict:
        return {
            **self.identity,
            "config": self.config_path,
            "dry_run": self.dry_run,
            "rules": [r.name for r in self.config.rules],
            "managed": self.state.managed,
            "tier_bytes": {name: view["tier_bytes"] for name, view in
                           ((self.state.metrics_view or {}).get("rules") or {}).items() if view.get("tier_bytes")},
            "ticks": self.state.ticks,
            "last_tick": self.state.last_tick,
            "last_reload": self.state.last_reload,
            "recent": self.state.recent[-20:],
            "errors": self.state.errors,
        }


def _one_line(text: str, limit: int = 300) -> str:
    flat = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def _warn_restart_only(old: Config, new: Config) -> None:
    """Endpoints and directories are bound at start; a reload cannot move them."""
    for section, keys in (("metrics", ("listen",)), ("control", ("socket", "mode", "group")),
                          ("daemon", ("runtime_dir", "state_dir"))):
        for key in keys:
            if getattr(getattr(old, section), key) != getattr(getattr(new, section), key):
                log.warning("[%s] %s changed: it takes effect at the next restart", section, key)
