"""The composition root: every object the daemon uses is built here, once, and handed in.

:func:`build_daemon` loads the config, chooses safe runtime and state
directories, and builds the Notifier and its Heartbeat, the Metrics, the one
Executor (budget, stall bound, dry-run), the Sensor, the shim publishers,
the status and history files and the ControlServer wired to that same
Executor.  The :class:`~numad_py.daemon.service.Daemon` builds nothing, so
tests drive its loop with fakes.  Nothing is bound or written here: the
endpoints start in ``Daemon.run``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from .. import procfs
from ..act.executor import Executor
from ..act.pacing import Pacer
from ..stall import StallPolicy
from ..config.watch import ConfigWatcher
from ..config import Config, ConfigError, Problem, load_config
from ..control.server import ControlServer
from ..decide.planner import plan as make_plan
from ..sense.access import AccessSensor
from ..sense.damon import Kdamond
from ..sense.processes import Sensor, take_snapshot
from ..topology import online_nodes, read_topology
from .endpoints import ControlEndpoint, MetricsEndpoint, StartupError
from .notify import Notifier
from .publish import NodeTablePublisher, ShimRulesPublisher
from .runtime import RuntimeDir, UnsafeDirectory, choose_runtime_dir, privilege_limits, safe_dir
from .service import Daemon
from .statefiles import HistoryStore, StatusFile
from .watchdog import Heartbeat

log = logging.getLogger("numad_py.daemon")


def load_config_safely(path: Path) -> Config:
    """load_config, with anything it may raise (UnicodeDecodeError, RecursionError,
    OverflowError... from a hostile file) turned into a one-problem ConfigError."""
    try:
        from ..numa.policy import unsupported_modes   # a rule with a mode this kernel lacks is an error
        return load_config(path, online_nodes=online_nodes(), unsupported_policies=unsupported_modes())
    except ConfigError:
        raise
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        if len(message) > 200:
            message = message[:200] + "..."
        raise ConfigError([Problem(str(path), 1, "file", f"cannot load: {message}")]) from None


def build_daemon(config_path: str, *, dry_run: bool = False, environ: Mapping[str, str] = os.environ) -> Daemon:
    """Raises ConfigError (a broken config) or StartupError (one line) when it cannot build."""
    config = load_config_safely(Path(config_path))
    try:
        runtime = choose_runtime_dir(config.daemon.runtime_dir)
    except OSError as exc:
        raise StartupError(str(exc)) from None
    stop = threading.Event()
    notifier = Notifier(environ)
    heartbeat = Heartbeat(notifier)
    cell: list[Daemon] = []                 # the collector and the sensor read the daemon built below
    metrics = None
    if config.metrics.listen:
        from ..metrics import Metrics       # prometheus_client is only needed with an endpoint
        metrics = Metrics(state_provider=lambda: cell[0].metrics_state() if cell else None)
    d = config.daemon
    executor = Executor(topology=read_topology, pacer=Pacer(d.budget, beat=heartbeat.beat),
                        stall=StallPolicy(d.max_stall), dry_run=dry_run, metrics=metrics, stop=stop,
                        beat=heartbeat.beat)
    socket_path = control_socket_path(config, runtime)
    # The sensor reuses residency reads of processes the daemon's history says are not due.
    sensor = Sensor(history=lambda: cell[0].state.history if cell else None)
    access = AccessSensor(sensor.snapshot, Kdamond(claim_dir=runtime.path))   # tier rules' DAMON
    daemon = Daemon(
        config=config, config_path=config_path,
        load_config=lambda: load_config_safely(Path(config_path)),
        sense=access.snapshot, decide=make_plan, preview_sense=lambda c: access.preview(take_snapshot(c)),
        executor=executor, notifier=notifier, heartbeat=heartbeat, stop_event=stop,
        publishers=[NodeTablePublisher(runtime.path), ShimRulesPublisher(runtime.path)],
        status_file=StatusFile(runtime.path), history_store=HistoryStore(state_directory(d.state_dir)),
        metrics=metrics, dry_run=dry_run,
        identity={"pid": os.getpid(), "start_time": procfs.start_time(os.getpid()),
                  "socket": socket_path, "runtime_dir": str(runtime.path)},
        config_changed=ConfigWatcher(config_path).changed,
    )
    cell.append(daemon)
    control = ControlServer(
        socket_path, executor=executor, status=daemon.status, plan=daemon.plan_preview,
        reload=daemon.request_reload, mode=config.control.mode, group=config.control.group,
        on_request=metrics.record_request if metrics is not None else None,
    )
    if metrics is not None:
        daemon.endpoints.append(MetricsEndpoint(config.metrics.listen, metrics))
    daemon.endpoints.append(ControlEndpoint(control))
    daemon.endpoints.append(DamonEndpoint(access))     # its stop() turns DAMON off at shutdown
    for limit in privilege_limits():
        log.warning("running as uid %d with %s", os.getuid(), limit)
    return daemon


class DamonEndpoint:
    """The tier rules' kdamond as an endpoint: nothing to start; stop() on every way out
    of ``Daemon.run`` turns DAMON off and removes what the daemon added."""

    def __init__(self, access: AccessSensor):
        self.access = access

    def start(self) -> DamonEndpoint:
        return self

    def stop(self) -> None:
        self.access.stop()


def control_socket_path(config: Config, runtime: RuntimeDir) -> str:
    """The configured socket, moved into the per-user runtime dir when it sat in the
    configured runtime dir and that one cannot be used (an ordinary user with the defaults)."""
    configured = Path(config.control.socket)
    if runtime.preferred or configured.parent != Path(config.daemon.runtime_dir):
        return str(configured)
    moved = runtime.path / configured.name
    log.warning("control socket at %s instead of %s (clients: --socket %s)", moved, configured, moved)
    return str(moved)


def state_directory(configured: str) -> Path | None:
    """state_dir if it is ours (systemd's StateDirectory= may be a symlink into
    /var/lib/private: it is resolved first); None, with a warning, if it cannot be used."""
    path = Path(os.path.realpath(configured))
    try:
        safe_dir(path, mode=0o700, private=False, parents=True)
    except (UnsafeDirectory, OSError) as exc:
        log.warning("state_dir %s cannot be used (%s): history is not kept across restarts",
                    configured, getattr(exc, "strerror", None) or exc)
        return None
    return path
