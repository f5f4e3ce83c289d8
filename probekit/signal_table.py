"""Old path of :mod:`probekit.rdm.signal_table`, kept as an alias: importing it gives that module itself.

Kept because CONTRIBUTING.md showed signal authors ``from probekit.signal_table import Signal``,
before the modules were grouped into packages. New code imports ``probekit.rdm.signal_table``.
"""
import sys

from probekit.rdm import signal_table as _module

sys.modules[__name__] = _module
