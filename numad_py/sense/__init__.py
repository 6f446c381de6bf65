"""Sensing the machine: processes (/proc), per-node residency (numa_maps), cgroups, nodes (sysfs).

Import the submodules directly (``numad_py.sense.processes``); this file
stays empty so ``numad_py.config`` can use ``sense.maps`` without a cycle.
"""
