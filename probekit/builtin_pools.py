"""Old path of :mod:`probekit.pool.builtin`, kept as an alias: importing it gives that module itself.

Kept because docs/slices.md showed ``from probekit.builtin_pools import load_builtin``, before the
modules were grouped into packages. New code imports ``probekit.pool.builtin``.
"""
import sys

from probekit.pool import builtin as _module

sys.modules[__name__] = _module
