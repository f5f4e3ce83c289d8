"""Old path of :mod:`probekit.rdm.indicators`, kept as an alias: importing it gives that module itself.

Kept because README.md named ``probekit.indicators`` as the home of the classical indicators, before
the modules were grouped into packages. New code imports ``probekit.rdm.indicators``.
"""
import sys

from probekit.rdm import indicators as _module

sys.modules[__name__] = _module
