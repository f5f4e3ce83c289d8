"""Old path of :mod:`probekit.rdm.spectral`, kept as an alias: importing it gives that module itself.

Kept because CONTRIBUTING.md named ``probekit.spectral.SpectralBatch`` as what a signal computes
from, before the modules were grouped into packages. New code imports ``probekit.rdm.spectral``.
"""
import sys

from probekit.rdm import spectral as _module

sys.modules[__name__] = _module
