"""The decision core: PURE functions from a snapshot, the config and history to a plan.

Nothing here touches the OS (a hook rejects imports of os, psutil, socket,
subprocess, cffi and the NUMA binding), so every decision is tested on
literal snapshots.
"""
