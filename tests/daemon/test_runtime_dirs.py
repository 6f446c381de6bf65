"""Runtime directories are created 0700, owned by us, and a planted one is never used
(issue 18 item 2); an ordinary user with the default socket starts in a private dir (item 19)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from numad_py.daemon.runtime import UnsafeDirectory, choose_runtime_dir, safe_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))
from as_other_user import numad_py_command

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="plants directories owned by another user")


@pytest.fixture
def places(tmp_path, monkeypatch):
    """preferred, $XDG_RUNTIME_DIR/run and $TMPDIR/run-UID, all under tmp_path."""
    (tmp_path / "xdg").mkdir()
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path / "run", tmp_path / "xdg" / "run", tmp_path / "tmp" / f"run-{os.getuid()}"


def test_a_new_fallback_is_created_private_whatever_the_umask(places, tmp_path):
    preferred, xdg, _ = places
    preferred.symlink_to(tmp_path)                      # the configured dir is a symlink: refused
    old = os.umask(0)
    try:
        chosen = choose_runtime_dir(str(preferred))
    finally:
        os.umask(old)
    assert chosen.path == xdg and chosen.created and not chosen.preferred
    st = os.lstat(xdg)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()


@as_root
def test_planted_dirs_and_symlinks_are_never_used(places, tmp_path):
    preferred, xdg, tmpdir = places
    preferred.mkdir()
    os.chown(preferred, NOBODY, NOBODY)                 # someone else's
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    xdg.symlink_to(victim)                              # a symlink to our own private dir
    tmpdir.mkdir()
    os.chmod(tmpdir, 0o777)                             # ours, but open to everyone
    with pytest.raises(OSError) as info:
        choose_runtime_dir(str(preferred))
    message = str(info.value)
    assert "belongs to uid 65534" in message and "symlink" in message and "mode 0777" in message, message
    assert list(victim.iterdir()) == []                  # nothing written through the symlink
    os.chmod(tmpdir, 0o700)
    assert choose_runtime_dir(str(preferred)).path == tmpdir


def test_a_private_fallback_with_group_bits_is_refused(tmp_path):
    d = tmp_path / "d"
    d.mkdir(mode=0o750)
    os.chmod(d, 0o750)
    with pytest.raises(UnsafeDirectory, match="mode 0750"):
        safe_dir(d, mode=0o700, private=True)
    assert safe_dir(d, mode=0o755, private=False).path == d    # the shared, configured kind may be 0750


@as_root
def test_an_ordinary_user_with_the_default_socket_starts_in_a_private_dir():
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) missing")
    base = Path(tempfile.mkdtemp(prefix="numad-nobody-", dir="/tmp"))   # pytest's tmp dirs are 0700
    os.chmod(base, 0o755)
    try:
        _start_as_nobody(base / "home")
    finally:
        shutil.rmtree(base)


def _start_as_nobody(home: Path) -> None:
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    config = home / "numad-py.toml"
    # The defaults: runtime_dir /run/numad-py and [control] socket /run/numad-py/control.sock.
    config.write_text('[metrics]\nlisten = ""\n[daemon]\nstate_dir = "/var/lib/numad-py-test-none"\n')
    os.chown(config, NOBODY, NOBODY)
    env = {"PATH": os.environ.get("PATH", ""), "XDG_RUNTIME_DIR": str(home), "HOME": str(home)}
    with numad_py_command(NOBODY) as numad_py:   # works from a checkout under /root too
        proc = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                               *numad_py, "run", "--once", "--config", str(config)],
                              capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"control socket at {home}/numad-py/control.sock" in proc.stderr, proc.stderr
    private = home / "numad-py"
    assert stat.S_IMODE(os.lstat(private).st_mode) == 0o700 and os.lstat(private).st_uid == NOBODY
    assert not (private / "control.sock").exists() and not (private / "status.json").exists()
