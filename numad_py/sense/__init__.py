"""Sensing the machine: processes (/proc), per-node residency (numa_maps), nodes (sysfs).

Import the submodules directly (``numad_py.sense.processes``).  Every /proc
read goes through :mod:`numad_py.procfs`; the selector grammar is in
:mod:`numad_py.selectors`, so nothing below sense (config, numa) imports it.
"""
