"""numad-py: a NUMA placement daemon."""

__version__ = "0.1.0"
