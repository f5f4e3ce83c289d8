"""Old path of :mod:`probekit.selection.apportionment`, kept as an alias: importing it gives that module itself.

Kept because CONTRIBUTING.md told selector authors to interleave sources with
``probekit.apportionment``, before the modules were grouped into packages. New code imports
``probekit.selection.apportionment``.
"""
import sys

from probekit.selection import apportionment as _module

sys.modules[__name__] = _module
