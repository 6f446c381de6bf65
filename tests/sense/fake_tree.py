"""A fake /proc and /sys tree in a temporary directory."""

from __future__ import annotations

from pathlib import Path

PAGE = 4096
BTIME = 1_700_000_000
TICKS = 100


class FakeMachine:
    def __init__(self, root: Path, *, nodes: dict[int, str] | None = None):
        self.proc = root / "proc"
        self.sys = root / "sys"
        (self.proc / "sys/kernel").mkdir(parents=True)
        (self.proc / "sys/kernel/numa_balancing").write_text("1\n")
        self.set_cpu_times({0: (100, 100), 1: (0, 200), 2: (50, 50), 3: (50, 50)})
        nodes = nodes if nodes is not None else {0: "0-1", 1: "2-3"}
        base = self.sys / "devices/system/node"
        base.mkdir(parents=True)
        (base / "online").write_text(",".join(map(str, nodes)) + "\n")
        for i, cpus in nodes.items():
            d = base / f"node{i}"
            d.mkdir()
            (d / "cpulist").write_text(cpus + "\n")
            (d / "meminfo").write_text(
                f"Node {i} MemTotal:       8388608 kB\nNode {i} MemFree:        {1048576 * (i + 1)} kB\n"
            )
            (d / "distance").write_text(" ".join("10" if j == i else "21" for j in nodes) + "\n")

    def set_cpu_times(self, times: dict[int, tuple[int, int]]) -> None:
        """Per CPU: (busy, idle) ticks."""
        lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
        lines += [f"cpu{c} {busy} 0 0 {idle} 0 0 0 0 0 0" for c, (busy, idle) in times.items()]
        (self.proc / "stat").write_text("\n".join(lines) + f"\nintr 0\nbtime {BTIME}\nprocesses 1\n")

    def add_process(
        self,
        pid: int,
        comm: str,
        *,
        uid: int = 0,
        rss_pages: int = 256,
        starttime: int = 500,
        flags: int = 0x400100,
        cgroup: str = "/system.slice/app.service",
        cmdline: tuple[str, ...] = ("app", "--serve"),
        exe: str = "/usr/bin/app",
        numa_maps: str = "7f0000000000 default anon=3 dirty=3 N0=2 N1=1 kernelpagesize_kB=4\n",
        cpus_allowed: str = "0-3",
        mems_allowed: str = "0-1",
        threads: int = 4,
    ) -> Path:
        d = self.proc / str(pid)
        d.mkdir()
        fields = ["S", "1", str(pid), str(pid), "0", "-1", str(flags)] + ["0"] * 10
        fields += [str(threads), "0", str(starttime), "1000000", str(rss_pages)] + ["0"] * 30
        (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields) + "\n")
        (d / "status").write_text(
            f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nThreads:\t{threads}\n"
            f"Cpus_allowed_list:\t{cpus_allowed}\nMems_allowed_list:\t{mems_allowed}\n"
        )
        (d / "cgroup").write_text(f"0::{cgroup}\n")
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in cmdline) + b"\0")
        (d / "exe").symlink_to(exe)
        (d / "numa_maps").write_text(numa_maps)
        return d
