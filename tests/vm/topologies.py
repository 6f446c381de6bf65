"""The guests tests/vm/run.py boots: kernels, topologies, and which runs on which.

A topology is a plain dict (it also travels into the guest as NUMAD_VM_SPEC,
so tests compare what the kernel shows with what qemu was asked for):

    {"memory": "2G",
     "nodes": [{"mem": "1G", "cpus": [0, 1]}, ...],   # cpus [] = memory-only node
     "distances": [[10, 20], [20, 10]],               # optional SLIT
     "hmat": {"latency_ns": [[...]], "bandwidth": [[...]]}}   # optional, see below

Without "hmat" the nodes go to vng's --numa / --numa-distance.  With it,
vng's --numa cannot say enough, so the whole machine is described in
--qemu-opts: one memory-backend-ram per node, `-numa node` (a memory-only
node names its initiator), and an hmat-lb latency and bandwidth entry for
every initiator (CPU node) x target (every node).  Stdlib only.
"""

from __future__ import annotations

CPUS = 4

# name -> the variable tests/vm/setup.sh --print-env reports its vmlinuz in.
KERNELS = {"6.1": "NUMAD_VM_KERNEL_6_1", "6.12": "NUMAD_VM_KERNEL_6_12"}

# Four nodes, one CPU each; distances are neither uniform nor symmetric
# (ACPI SLIT allows d(a,b) != d(b,a)): node 3 is far from everyone, and
# 0->1 is cheaper than 1->0.
FOUR_DISTANCES = [
    [10, 16, 24, 40],
    [18, 10, 20, 32],
    [24, 20, 10, 28],
    [40, 32, 28, 10],
]

# Rows: initiators 0-1 (the CPU nodes); columns: targets 0-2.  Node 2 is a
# CXL-like expander: 4x the latency and 1/4 the bandwidth of local DRAM.
TIERED_HMAT = {
    "latency_ns": [[100, 150, 400], [150, 100, 400]],
    "bandwidth": [["20G", "15G", "5G"], ["15G", "20G", "5G"]],
}

TOPOLOGIES: dict[str, dict] = {
    "two": {
        "memory": "2G",
        "nodes": [{"mem": "1G", "cpus": [0, 1]}, {"mem": "1G", "cpus": [2, 3]}],
    },
    "four": {
        "memory": "2G",
        "nodes": [{"mem": "512M", "cpus": [i]} for i in range(4)],
        "distances": FOUR_DISTANCES,
    },
    "memonly": {
        "memory": "3G",
        "nodes": [{"mem": "1G", "cpus": [0, 1]}, {"mem": "1G", "cpus": [2, 3]}, {"mem": "1G", "cpus": []}],
    },
    # memonly's shape, but the firmware (HMAT) says node 2 is slow: a kernel
    # that tiers by HMAT (>= 6.7) puts it in a lower memory tier.
    "tiered": {
        "memory": "3G",
        "nodes": [{"mem": "1G", "cpus": [0, 1]}, {"mem": "1G", "cpus": [2, 3]},
                  {"mem": "1G", "cpus": [], "initiator": 0}],
        "hmat": TIERED_HMAT,
    },
}

# What `run.py` boots without --kernel/--topology, in this order; each pair is
# one boot running its whole test group.  `two` (the bulk of the tests) on
# both kernels; four and memonly on the distribution kernel; tiered needs a
# kernel that tiers memory by HMAT.  docs/kernels.md has the timings.
DEFAULT_MATRIX: list[tuple[str, str]] = [
    ("6.1", "two"),
    ("6.1", "four"),
    ("6.1", "memonly"),
    ("6.12", "two"),
    ("6.12", "tiered"),
]


def _cpu_range(cpus: list[int]) -> str:
    return f"{min(cpus)}-{max(cpus)}" if len(cpus) > 1 else str(cpus[0])


def vng_args(spec: dict) -> list[str]:
    args = ["--cpus", str(CPUS), "-m", spec["memory"]]
    if "hmat" in spec:
        # "=": a separate value starting with "-" would read as an option to vng's argparse.
        return args + ["--qemu-opts=" + " ".join(hmat_qemu_opts(spec))]
    for node in spec["nodes"]:
        text = node["mem"]
        if node["cpus"]:
            text += f",cpus={_cpu_range(node['cpus'])}"
        args += ["--numa", text]
    dist = spec.get("distances")
    if dist:
        for a, row in enumerate(dist):
            for b, value in enumerate(row):
                if a != b:
                    args += ["--numa-distance", f"{a},{b}={value}"]
    return args


def hmat_qemu_opts(spec: dict) -> list[str]:
    """qemu options for the nodes and their HMAT (no spaces inside an option: vng joins them)."""
    opts = ["-machine", "hmat=on"]
    nodes = spec["nodes"]
    for i, node in enumerate(nodes):
        opts += ["-object", f"memory-backend-ram,id=m{i},size={node['mem']}"]
    for i, node in enumerate(nodes):
        text = f"node,nodeid={i},memdev=m{i}"
        if node["cpus"]:
            text += f",cpus={_cpu_range(node['cpus'])}"
        else:
            text += f",initiator={node['initiator']}"
        opts += ["-numa", text]
    initiators = [i for i, node in enumerate(nodes) if node["cpus"]]
    hmat = spec["hmat"]
    for row, initiator in enumerate(initiators):
        for target in range(len(nodes)):
            base = f"hmat-lb,initiator={initiator},target={target},hierarchy=memory"
            opts += ["-numa", f"{base},data-type=access-latency,latency={hmat['latency_ns'][row][target]}",
                     "-numa", f"{base},data-type=access-bandwidth,bandwidth={hmat['bandwidth'][row][target]}"]
    return opts
