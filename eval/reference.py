"""Old path of :mod:`probekit.eval.families.base`, kept as an alias: importing it gives that module itself.

Kept because CONTRIBUTING.md and docs/transitions.md told family authors to subclass
``probekit.eval.reference.ReferenceRun`` (and use its ``gradient_norm``), before the modules were
grouped into packages. New code imports ``probekit.eval.families.base``.
"""
import sys

from probekit.eval.families import base as _module

sys.modules[__name__] = _module
