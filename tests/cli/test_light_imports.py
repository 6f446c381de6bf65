"""The light commands stay light: status, show, migrate --via-daemon, advise and --help import
neither pydantic nor prometheus_client (libvirt runs advice at every VM start; scripts loop)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("pydantic", "prometheus_client")
PROBE = """
import sys
from numad_py.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("HEAVY:" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["status", "--socket", "/nonexistent.sock", "--runtime-dir", "/nonexistent"],
    ["show", str(os.getpid())],
    ["migrate", str(os.getpid()), "--to", "0", "--via-daemon", "--socket", "/nonexistent.sock"],
    ["advise", "--cpus", "1"],
], ids=lambda a: a[0])
def test_light_command_imports_no_heavy_module(argv):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
                          capture_output=True, text=True, timeout=60)
    assert "HEAVY:\n" in proc.stderr, (argv, proc.stderr)


def test_the_probe_sees_a_heavy_import():
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), "check-config", "/nonexistent.toml"],
                          capture_output=True, text=True, timeout=60)
    assert "HEAVY:pydantic" in proc.stderr
