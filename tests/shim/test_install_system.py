"""``numad-py shim install-system / uninstall-system`` on a temporary root (issue 17).

The host's /etc/ld.so.preload is never touched: every case edits
TMP/etc/ld.so.preload through ``--root``.  The library check is real (a child
process preloads the built shim); the guest test (tests/numa/test_shim_system.py)
installs into the VM's real /etc.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from numad_py.shim import shim_path
from numad_py.shim.system import (
    CREATED_MARK, SystemShimError, added, install_system, removed, uninstall_system,
)

LIB = str(shim_path())
OLD = b"/opt/old-venv/lib/python3.11/site-packages/numad_py/libnumad_shim.so"


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "etc").mkdir()
    return tmp_path


@pytest.fixture(scope="module")
def lib():
    """The built shim copied where every user can reach it: install refuses a library under a
    directory others cannot search, and a checkout under /root (a fresh machine's) is one."""
    d = Path(tempfile.mkdtemp(prefix="numad-install-lib-", dir="/tmp"))
    d.chmod(0o755)
    copy = d / "libnumad_shim.so"
    shutil.copy(LIB, copy)
    copy.chmod(0o644)
    yield str(copy)
    shutil.rmtree(d, ignore_errors=True)


def preload(root: Path) -> Path:
    return root / "etc" / "ld.so.preload"


def cli(*args: str, caps_dropped: bool = False) -> subprocess.CompletedProcess:
    head = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"] if caps_dropped else []
    return subprocess.run([*head, sys.executable, "-m", "numad_py.cli", *args],
                          capture_output=True, text=True, timeout=120)


# --- the pure edits: a table of files ---------------------------------------------------

LIBB = LIB.encode()


@pytest.mark.parametrize("before, after", [
    (b"", LIBB + b"\n"),
    (b"/lib/a.so\n", b"/lib/a.so\n" + LIBB + b"\n"),
    (b"/lib/a.so", b"/lib/a.so\n" + LIBB + b"\n"),                        # no final newline
    (b"# note\n/lib/a.so:/lib/b.so\n\n", b"# note\n/lib/a.so:/lib/b.so\n\n" + LIBB + b"\n"),
    (b"/lib/a.so\n" + OLD + b"\n/lib/b.so\n", b"/lib/a.so\n" + LIBB + b"\n/lib/b.so\n"),   # older copy: its place
    (b"/lib/a.so:" + OLD + b" # x\n", LIBB + b"\n/lib/a.so # x\n"),
])
def test_added(before, after):
    assert added(before, LIBB, created=False) == after


def test_added_is_idempotent_and_comments_do_not_count():
    assert added(b"/lib/a.so " + LIBB + b"\n", LIBB, created=False) is None
    commented = b"# " + LIBB + b"\n"
    assert added(commented, LIBB, created=False) == commented + LIBB + b"\n"


@pytest.mark.parametrize("before, after", [
    (b"/lib/a.so\n" + LIBB + b"\n/lib/b.so\n", b"/lib/a.so\n/lib/b.so\n"),
    (b"/lib/a.so:" + LIBB + b" /lib/b.so # keep me\n", b"/lib/a.so /lib/b.so # keep me\n"),
    (LIBB + b" # ours, with a note\n", b"# ours, with a note\n"),                 # the note stays
    (OLD + b"\n" + LIBB + b"\n", b""),
    (b"/lib/a.so\n# " + LIBB + b"\n", None),                                # only a comment names it
])
def test_removed(before, after):
    assert removed(before, LIBB) == after


# --- the file --------------------------------------------------------------------------

def test_install_keeps_other_entries_order_mode_and_is_idempotent(root, lib):
    path = preload(root)
    path.write_bytes(b"# site libraries\n/lib/a.so\n/lib/b.so:/lib/c.so\n")
    path.chmod(0o640)
    assert install_system(root, lib).action == "installed"
    assert path.read_bytes() == b"# site libraries\n/lib/a.so\n/lib/b.so:/lib/c.so\n" + lib.encode() + b"\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    ino = path.stat().st_ino
    assert install_system(root, lib).action == "already"
    assert path.stat().st_ino == ino                                   # not rewritten
    assert sorted(p.name for p in path.parent.iterdir()) == ["ld.so.preload"]   # no temp left
    assert uninstall_system(root, lib).action == "removed"
    assert path.read_bytes() == b"# site libraries\n/lib/a.so\n/lib/b.so:/lib/c.so\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert uninstall_system(root, lib).action == "absent"


def test_a_file_install_created_is_removed_one_it_found_is_kept(root, lib):
    path = preload(root)
    change = install_system(root, lib)
    assert change.action == "installed" and path.read_bytes() == CREATED_MARK + lib.encode() + b"\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert uninstall_system(root, lib).file_removed and not path.exists()
    path.write_bytes(b"")                                              # the admin's empty file
    install_system(root, lib)
    change = uninstall_system(root, lib)
    assert change.action == "removed" and not change.file_removed and path.read_bytes() == b""
    path.write_bytes(b"")                                              # created by us, then another entry added
    path.unlink()
    install_system(root, lib)
    with path.open("ab") as f:
        f.write(b"/lib/theirs.so\n")
    assert not uninstall_system(root, lib).file_removed
    assert path.read_bytes() == CREATED_MARK + b"/lib/theirs.so\n"


@pytest.fixture
def open_dir():
    """A directory every user can search (pytest's tmp dirs are 0700), owned by us."""
    d = Path(tempfile.mkdtemp(prefix="numad-install-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_unloadable_library_is_refused_and_the_file_untouched(root, tmp_path, open_dir):
    path = preload(root)
    path.write_bytes(b"/lib/a.so\n")
    ino = path.stat().st_ino
    bogus = open_dir / "libnumad_shim.so"
    bogus.write_text("not an ELF file\n")
    bogus.chmod(0o644)
    with pytest.raises(SystemShimError, match="cannot be preloaded"):
        install_system(root, bogus)
    good = open_dir / "lib" / "libnumad_shim.so"
    good.parent.mkdir()
    shutil.copy(LIB, good)
    good.chmod(0o666)
    with pytest.raises(SystemShimError, match="writable by others"):
        install_system(root, good)
    good.chmod(0o644)
    good.parent.chmod(0o777)                                        # anyone could swap the file
    with pytest.raises(SystemShimError, match="could replace the library"):
        install_system(root, good)
    good.parent.chmod(0o700)                                        # other users' programs cannot reach it
    with pytest.raises(SystemShimError, match="not searchable by every user"):
        install_system(root, good)
    for bad, why in (("numad_py/libnumad_shim.so", "absolute"), (str(tmp_path / "no such.so"), "whitespace"),
                     (str(tmp_path / "missing.so"), "No such file")):
        with pytest.raises(SystemShimError, match=why):
            install_system(root, bad)
    assert path.read_bytes() == b"/lib/a.so\n" and path.stat().st_ino == ino
    good.parent.chmod(0o755)
    assert install_system(root, good).action == "installed"        # the same copy, once fixed


def test_bad_files_get_one_line_and_lose_nothing(root, tmp_path, lib):
    path = preload(root)
    target = tmp_path / "elsewhere"
    target.write_bytes(b"/lib/a.so\n")
    path.symlink_to(target)
    r = cli("shim", "install-system", "--root", str(root), "--library", lib)
    assert r.returncode == 1 and "symbolic link" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert path.is_symlink() and target.read_bytes() == b"/lib/a.so\n"
    path.unlink()
    path.mkdir()
    r = cli("shim", "uninstall-system", "--root", str(root))
    assert r.returncode == 1 and "not a regular file" in r.stderr and "Traceback" not in r.stderr
    r = cli("shim", "install-system", "--root", str(tmp_path / "no-root"), "--library", lib)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="drops root's capabilities")
def test_unwritable_directory_is_a_one_line_error(root, lib):
    path = preload(root)
    path.write_bytes(b"/lib/a.so\n")
    (root / "etc").chmod(0o555)
    try:
        r = cli("shim", "install-system", "--root", str(root), "--library", lib, caps_dropped=True)
    finally:
        (root / "etc").chmod(0o755)
    assert r.returncode == 1 and "Permission denied" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert path.read_bytes() == b"/lib/a.so\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["ld.so.preload"]


def test_cli_json_round_trip(root, lib):
    import json
    r = cli("shim", "install-system", "--root", str(root), "--library", lib, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"path": str(preload(root)), "library": lib, "action": "installed",
                                    "file_removed": False}
    r = cli("shim", "uninstall-system", "--root", str(root))
    assert r.returncode == 0 and "removed" in r.stdout and not preload(root).exists()
