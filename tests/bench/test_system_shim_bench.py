"""bench/bench_system_shim.py's driver: every case runs with its own environment, interleaved."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bench_system_shim import build_bare_library, build_driver, build_empty_library, run_block

from numad_py.shim import shim_path


def test_each_case_loads_what_it_names(tmp_path):
    """A case's LD_PRELOAD reaches its execs and no other case's: a library that
    cannot be loaded makes ld.so complain on stderr, which only that case's execs do."""
    driver = build_driver(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMAD_SHIM_", "LD_"))}
    cases = {"base": {}, "bare": {"LD_PRELOAD": str(build_bare_library(tmp_path))},
             "empty": {"LD_PRELOAD": str(build_empty_library(tmp_path))},
             "shim": {"LD_PRELOAD": str(shim_path()), "NUMAD_SHIM_DISABLE": "1"}}
    medians = run_block(driver, 30, cases, env)
    assert list(medians) == list(cases) and all(0 < s < 1 for s in medians.values())

    out = subprocess.run([str(driver), "5", "-", f"LD_PRELOAD={tmp_path / 'missing.so'}"], env=env,
                         capture_output=True, text=True, check=True)
    assert len(out.stdout.split()) == 2
    assert out.stderr.count("missing.so") == 5 + 20          # 5 timed rounds and 20 warm-up, that case only


def test_the_bare_library_has_no_start_files_relocations_or_relro(tmp_path):
    """The floor case: nothing for ld.so to run, relocate or protect; the empty library,
    linked as the shim is, has the C start files' constructors, relocations and RELRO."""
    def elf(lib: Path) -> str:
        return subprocess.run(["readelf", "-dlW", str(lib)], capture_output=True, text=True, check=True).stdout

    bare, empty = elf(build_bare_library(tmp_path)), elf(build_empty_library(tmp_path))
    for marker in ("(INIT)", "(INIT_ARRAY)", "(RELA)", "GNU_RELRO", "(NEEDED)"):
        assert marker not in bare, marker
    for marker in ("(INIT)", "(INIT_ARRAY)", "(RELA)", "GNU_RELRO"):
        assert marker in empty, marker
