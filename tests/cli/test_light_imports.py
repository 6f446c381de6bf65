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


# What each light path must not import beyond a bare interpreter (issue 17: start-up cost).
# Modules already loaded before numad_py (a site hook may load some) do not count.
PATH_PROBE = """
import sys
before = set(sys.modules)
from numad_py.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("LOADED:" + ",".join(m for m in {unwanted!r} if m in sys.modules and m not in before), file=sys.stderr)
"""
NO_DAEMON = ["--socket", "/nonexistent/control.sock", "--runtime-dir", "/nonexistent"]


# argparse, re, enum, json and collections are each milliseconds of a ~14 ms interpreter start-up.
STDLIB_HEAVY = ("argparse", "re", "enum", "json", "collections", "typing", "dataclasses", "shutil")


@pytest.mark.parametrize("argv, unwanted", [
    (["--help"], (*STDLIB_HEAVY, "ipaddress", "numad_py.procfs", "numad_py._numa", "numad_py.cli.exec_cmd")),
    (["status", *NO_DAEMON], (*STDLIB_HEAVY, "numad_py.client", "socket", "numad_py.procfs",
                              "numad_py.daemon.runtime")),
    (["show", str(os.getpid())], (*STDLIB_HEAVY, "numad_py._numa", "numad_py.numa", "numad_py.client",
                                  "numad_py.selectors")),
], ids=lambda a: a[0] if isinstance(a, list) else "")
def test_light_path_skips_what_it_does_not_use(argv, unwanted):
    proc = subprocess.run([sys.executable, "-c", PATH_PROBE.format(unwanted=unwanted), *argv],
                          capture_output=True, text=True, timeout=60)
    assert "LOADED:\n" in proc.stderr, (argv, proc.stderr)


def test_the_path_probe_sees_an_import():
    proc = subprocess.run([sys.executable, "-c", PATH_PROBE.format(unwanted=("numad_py.numa",)),
                           "show", str(os.getpid()), "--range", "0-1000"], capture_output=True, text=True, timeout=60)
    assert "LOADED:numad_py.numa" in proc.stderr, proc.stderr
