"""The VM harness's own logic, on the host: which guests boot, how qemu is told about HMAT,
how skips are counted, which directories nobody needs opened, and the kernel markers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "vm"))

import run  # noqa: E402  (tests/vm/run.py)
import topologies  # noqa: E402


def load_numa_conftest():
    """tests/numa/conftest.py under its own name (pytest loads it only for tests/numa)."""
    spec = importlib.util.spec_from_file_location("numa_conftest", REPO / "tests/numa/conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the matrix ----------------------------------------------------------------

def test_default_matrix_covers_two_on_every_kernel_and_tiered_on_6_12():
    pairs = run.select_pairs(None, None)
    assert pairs == topologies.DEFAULT_MATRIX
    assert {k for k, t in pairs if t == "two"} == set(topologies.KERNELS)
    assert ("6.12", "tiered") in pairs and ("6.1", "tiered") not in pairs
    assert {t for _, t in pairs} == set(topologies.TOPOLOGIES)
    assert len(pairs) == len(set(pairs))


@pytest.mark.parametrize("kernels, tops, want", [
    (None, ["two"], [("6.1", "two"), ("6.12", "two")]),
    (["6.12"], None, [("6.12", "two"), ("6.12", "tiered")]),
    (["6.12"], ["memonly"], [("6.12", "memonly")]),          # both named: exactly that pair
    (["6.1", "6.12"], ["two", "two"], [("6.1", "two"), ("6.12", "two")]),
])
def test_select_pairs(kernels, tops, want):
    assert run.select_pairs(kernels, tops) == want


def test_select_pairs_outside_the_matrix_says_so():
    with pytest.raises(SystemExit, match="name both --kernel and --topology"):
        run.select_pairs(None, ["nonexistent"])


# --- HMAT on the qemu command line ---------------------------------------------------

def test_tiered_is_described_by_hmat_not_by_vng_numa():
    args = topologies.vng_args(topologies.TOPOLOGIES["tiered"])
    assert "--numa" not in args
    qemu = [a for a in args if a.startswith("--qemu-opts=")]
    assert len(qemu) == 1        # one "--opt=value" word: vng's argparse takes no "-..." value after a space
    opts = qemu[0].removeprefix("--qemu-opts=").split()
    assert opts[:2] == ["-machine", "hmat=on"]
    numa = [opts[i + 1] for i, o in enumerate(opts) if o == "-numa"]
    assert "node,nodeid=2,memdev=m2,initiator=0" in numa
    lb = [n for n in numa if n.startswith("hmat-lb,")]
    assert len(lb) == 2 * 2 * 3          # latency + bandwidth, initiators 0-1 x targets 0-2
    assert "hmat-lb,initiator=1,target=2,hierarchy=memory,data-type=access-latency,latency=400" in lb
    assert "hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-bandwidth,bandwidth=20G" in lb
    assert "hmat-lb,initiator=1,target=0,hierarchy=memory,data-type=access-latency,latency=150" in lb
    backends = [opts[i + 1] for i, o in enumerate(opts) if o == "-object"]
    assert backends == [f"memory-backend-ram,id=m{i},size=1G" for i in range(3)]


def test_plain_topologies_still_use_vng_numa():
    args = topologies.vng_args(topologies.TOPOLOGIES["four"])
    assert args.count("--numa") == 4 and args.count("--numa-distance") == 12
    assert not any(a.startswith("--qemu-opts") for a in args)


# --- counting skips -------------------------------------------------------------------

JUNIT = """<testsuites><testsuite>
<testcase classname="a" name="passes"/>
<testcase classname="a" name="topo"><skipped message="needs VM topology four (this VM is two)"/></testcase>
<testcase classname="a" name="kern"><skipped message="needs VM kernel without weighted_interleave (6.12 has it)"/></testcase>
<testcase classname="a" name="other"><skipped message="needs the multi-node VM"/></testcase>
<testcase classname="a" name="fails"><failure message="boom"/></testcase>
</testsuite></testsuites>"""


def test_another_kernel_counts_like_another_topology_and_other_skips_do_not(tmp_path):
    (tmp_path / "r.xml").write_text(JUNIT)
    o = run.Outcome("6.12", "two")
    run.read_junit(tmp_path / "r.xml", o)
    assert (o.passed, o.failed, o.skipped_elsewhere) == (1, 1, 2)
    assert o.skipped_other == ["a.other: needs the multi-node VM"]
    assert "kernel 6.12" in o.line() and "2 for another kernel/topology" in o.line()
    assert o.failures == ["fails: boom"]


def test_the_summary_names_each_failed_test_with_its_message(tmp_path, capsys):
    (tmp_path / "r.xml").write_text(JUNIT)
    o = run.Outcome("6.1", "two")
    run.read_junit(tmp_path / "r.xml", o)
    assert run.report([o], strict=False, filtered=False, seconds=1, rundir=tmp_path) is True
    assert "failed: fails: boom" in capsys.readouterr().out


def test_ci_fails_on_other_skips_only(tmp_path, capsys):
    clean = run.Outcome("6.1", "two", passed=3, skipped_elsewhere=5)
    assert run.report([clean], strict=True, filtered=False, seconds=1, rundir=tmp_path) is False
    other = run.Outcome("6.1", "two", passed=3, skipped_other=["x: why"])
    assert run.report([other], strict=False, filtered=False, seconds=1, rundir=tmp_path) is False
    assert run.report([other], strict=True, filtered=False, seconds=1, rundir=tmp_path) is True


def test_a_kernel_that_did_not_boot_fails(tmp_path, capsys):
    dead = run.Outcome("6.12", "two", problems=["kernel 6.12 never started the tests (boot failure?)"])
    assert run.report([dead], strict=False, filtered=True, seconds=1, rundir=tmp_path) is True
    assert "FAIL 6.12/two" in capsys.readouterr().out


def test_a_kernel_crash_at_boot_is_found_in_the_console(tmp_path):
    import guest_runner
    console = tmp_path / "console.log"
    console.write_text("[    3.17] sched_clock: Marking stable\n"
                       "[    3.18] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n"
                       "[    3.18] Kernel panic - not syncing: Fatal exception in interrupt\n")
    assert guest_runner.boot_panic(console) == "Oops: int3: 0000 [#1] PREEMPT SMP NOPTI"
    console.write_text("[    3.17] Run /init as init process\n")
    assert guest_runner.boot_panic(console) is None
    assert guest_runner.boot_panic(tmp_path / "missing.log") is None



def fake_vng(tmp_path, first_boot: str) -> tuple:
    """A fake vng whose first boot prints ``first_boot`` (a console line) and runs nothing, and
    whose later boots run the guest (write its log); also the file counting the boots."""
    count, out = tmp_path / "boots", tmp_path / "guest.log"
    fake = tmp_path / "fake-vng"
    fake.write_text(f"#!/bin/sh\necho x >> {count}\n"
                    f"if [ $(wc -l < {count}) -eq 1 ]; then echo '{first_boot}'; exit 1; fi\n"
                    f"echo ran > {out}\n")
    fake.chmod(0o755)
    return fake, count, out


def boot(fake, out, tmp_path) -> bool:
    import guest_runner
    timed_out, _s = guest_runner.run_guest([str(fake)], tmp_path / "console.log",
                                           [guest_runner.Tail(out, "[g] ")], 30, tmp_path)
    return timed_out


def test_a_guest_that_crashed_while_booting_boots_once_more(tmp_path, capsys):
    fake, count, out = fake_vng(tmp_path, "[ 3.1] Oops: int3: 0000 [#1]")
    assert not boot(fake, out, tmp_path) and out.read_text() == "ran\n" and count.read_text().count("x") == 2
    assert "Oops: int3" in (tmp_path / "console.boot1.log").read_text()
    assert "died while booting (Oops: int3: 0000 [#1]); booting it once more" in capsys.readouterr().out
    # A guest that ran boots once.
    out.unlink()
    boot(fake, out, tmp_path)
    assert count.read_text().count("x") == 3


def test_a_guest_that_ended_silently_while_booting_boots_once_more(tmp_path, capsys):
    """The console stops mid-boot with no panic and nothing ran (seen on 6.1)."""
    fake, count, out = fake_vng(tmp_path, "[ 2.7] pci 0000:00:09.0: BAR 1")
    assert not boot(fake, out, tmp_path) and out.read_text() == "ran\n" and count.read_text().count("x") == 2
    assert "died while booting (no panic; last console line: [ 2.7] pci 0000:00:09.0: BAR 1)" in \
        capsys.readouterr().out


def test_a_guest_that_never_boots_is_tried_twice_then_reported(tmp_path):
    import guest_runner
    count = tmp_path / "boots"
    fake = tmp_path / "fake-vng"
    fake.write_text(f"#!/bin/sh\necho x >> {count}\necho '[ 2.7] pci 0000:00:09.0'\n")
    fake.chmod(0o755)
    out = tmp_path / "guest.log"
    boot(fake, out, tmp_path)
    assert count.read_text().count("x") == 1 + guest_runner.BOOT_RETRIES and not out.exists()


# --- a checkout under a 0700 directory -----------------------------------------------

def test_unreachable_ancestors_and_their_overlays(tmp_path):
    home = tmp_path / "home0700"
    checkout = home / "src" / "numad-py"
    (checkout / ".venv/bin").mkdir(parents=True)
    (checkout / ".venv/bin/python").touch()
    home.chmod(0o700)
    tmp_path.chmod(0o755)
    blocked = run.unreachable_dirs([checkout, checkout / ".venv/bin/python"])
    assert home in blocked and checkout not in blocked
    assert all(not p.stat().st_mode & 0o001 for p in blocked)
    # /tmp is already an overlay in vng's guests; a 0700 dir elsewhere gets one of its own.
    assert run.overlays_for([Path("/root"), Path("/root/x")]) == ["/root"]
    assert run.overlays_for([Path("/tmp/a"), Path("/home/alice")]) == []


def test_guest_script_opens_blocked_dirs_before_the_tests(tmp_path):
    text = run.guest_script("6.1", "two", tmp_path / "6.1-two", Path("/root/x/.venv/bin/python"),
                            [], [Path("/root"), Path("/root/my dir")])
    lines = text.splitlines()
    chmods = [i for i, line in enumerate(lines) if line.startswith("chmod o+x")]
    assert [lines[i].split(" || ")[0] for i in chmods] == ["chmod o+x /root", "chmod o+x '/root/my dir'"]
    assert max(chmods) < next(i for i, line in enumerate(lines) if " -m pytest " in line)
    assert "NUMAD_VM_KERNEL_NAME=6.1" in text


# --- kernel markers --------------------------------------------------------------------

@pytest.mark.parametrize("spec, release, want", [
    (">=6.9", "6.12.117+deb12-amd64", True),
    (">=6.9", "6.1.0-57-amd64", False),
    ("<6.12", "6.1.0-57-amd64", True),
    ("<6.12", "6.12.117+deb12-amd64", False),
    ("==6.1", "6.1.0-57-amd64", True),
    (">6.1.100", "6.1.0-57-amd64", False),
    (">= 6.7", "6.12.117+deb12-amd64", True),
])
def test_kernel_specs(spec, release, want):
    assert load_numa_conftest().kernel_satisfies(spec, release) is want


@pytest.mark.parametrize("spec", ["6.9", ">=six", "~6.1", ">=6.1.2.3"])
def test_bad_kernel_spec_is_a_usage_error(spec):
    with pytest.raises(pytest.UsageError, match="bad kernel marker"):
        load_numa_conftest().kernel_satisfies(spec, "6.1.0-57-amd64")


def test_unknown_kernel_feature_is_a_usage_error():
    with pytest.raises(pytest.UsageError, match="unknown kernel feature 'weighted_interleav'"):
        load_numa_conftest().kernel_has("weighted_interleav")


def test_home_node_probe_answers_on_this_kernel():
    # Every kernel since 5.17 has set_mempolicy_home_node; the probe must say so, not crash.
    conftest = load_numa_conftest()
    assert conftest.kernel_has("set_mempolicy_home_node") is (conftest.release_tuple(conftest.kernel_release()) >= (5, 17))

