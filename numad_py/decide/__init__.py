"""The decision core: PURE functions from a snapshot, the config and history to a plan.

Nothing here touches the OS, so every decision is tested on literal
snapshots.  That is enforced, not hoped for: the import-linter contract
"decide and selectors are pure" in pyproject.toml (checked by
``lint-imports``) fails when a module here imports os, socket, psutil,
threading, the NUMA binding, procfs, or sense/act/control/daemon/cli.
"""
