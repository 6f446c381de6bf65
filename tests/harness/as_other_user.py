"""Run numad-py as another user on the host, wherever the checkout lives.

A root user clones under /root (0700): another user cannot reach the checkout, its venv
or the package (nor, with pyenv, the interpreter).  Then what is unreachable is
bind-mounted read-only onto directories that user can enter, for the length of one
``with`` block, and numad-py runs from there: the base interpreter with the checkout and
the venv's site-packages on PYTHONPATH (the editable install names the unreachable path).
The host's permissions are never changed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = Path(sys.executable)


def reachable_by(uid: int, *paths: Path) -> bool:
    """Whether ``uid`` can read each path (checked as that user, not guessed from modes)."""
    probe = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "test", "-r"]
    return all(subprocess.run([*probe, str(p)], capture_output=True).returncode == 0 for p in paths)


@contextlib.contextmanager
def _bound(source: Path, stack: contextlib.ExitStack) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="numad-reach-", dir="/tmp"))
    os.chmod(base, 0o755)
    target = base / "m"
    target.mkdir()
    stack.callback(base.rmdir)
    stack.callback(target.rmdir)
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cannot bind-mount {source} for another user: {done.stderr.strip()}")
    stack.callback(subprocess.run, ["umount", str(target)], check=False)
    yield target


@contextlib.contextmanager
def numad_py_command(uid: int) -> Iterator[list[str]]:
    """The argv prefix that runs ``numad-py`` as ``uid``."""
    force = os.environ.get("NUMAD_TEST_FORCE_BIND") == "1"
    if not force and reachable_by(uid, REPO / "numad_py" / "__init__.py", VENV_PYTHON):
        yield [str(VENV_PYTHON.with_name("numad-py"))]
        return
    site = Path(sysconfig.get_paths()["purelib"])          # the venv's site-packages
    interpreter = VENV_PYTHON.resolve()                     # the base interpreter behind the venv
    prefix = interpreter.parent.parent
    with contextlib.ExitStack() as stack:
        repo = stack.enter_context(_bound(REPO, stack))
        path = [str(repo)]
        if site.is_relative_to(REPO):
            path.append(str(repo / site.relative_to(REPO)))
        else:
            path.append(str(stack.enter_context(_bound(site, stack))))
        if not reachable_by(uid, interpreter):
            interpreter = stack.enter_context(_bound(prefix, stack)) / interpreter.relative_to(prefix)
        yield ["env", "PYTHONPATH=" + ":".join(path), str(interpreter), "-m", "numad_py.cli"]
