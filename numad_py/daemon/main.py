"""``numad-py run``: build the daemon, detach if asked, run it; every failure is one line.

Exit status: 0 after a clean stop, 1 when it cannot start (a broken config,
no safe runtime directory, the metrics address or the control socket in
use); nothing is left behind then (no socket, no status file).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .. import procfs
from ..config import ConfigError
from .compose import build_daemon
from .endpoints import StartupError
from .logsetup import setup_logging

EXIT_OK, EXIT_FAILED = 0, 1


def run_main(config: str, *, dry_run: bool = False, once: bool = False, verbose: bool = False,
             detach: bool = False, pidfile: str | None = None) -> int:
    setup_logging(verbose)
    try:
        daemon = build_daemon(config, dry_run=dry_run)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_FAILED
    except StartupError as exc:
        print(f"numad-py: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if detach:
        return _detached(daemon, once=once, verbose=verbose, pidfile=pidfile)
    daemon.install_signal_handlers()
    return daemon.run(once=once)


def _detached(daemon, *, once: bool, verbose: bool, pidfile: str | None) -> int:
    """Outside systemd: detach with python-daemon and write a pid file."""
    import daemon as pydaemon
    from daemon.pidfile import TimeoutPIDLockFile

    lock = TimeoutPIDLockFile(pidfile, acquire_timeout=1) if pidfile else None
    log_path = Path(daemon.identity["runtime_dir"]) / "numad-py.log"
    with open(log_path, "a") as log_file, pydaemon.DaemonContext(
        pidfile=lock, stdout=log_file, stderr=log_file, umask=0o022,
        signal_map={}, working_directory="/",
    ):
        setup_logging(verbose)
        # The pid changed when detaching: the status file must name the one that runs.
        daemon.identity.update(pid=os.getpid(), start_time=procfs.start_time(os.getpid()))
        daemon.install_signal_handlers()
        return daemon.run(once=once)
