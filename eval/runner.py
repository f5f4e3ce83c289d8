"""Old path of :mod:`probekit.eval.store.runner`, kept as an alias: importing it gives that module itself.

Kept because README.md showed ``from probekit.eval.runner import load_or_record``, before the
modules were grouped into packages. New code imports ``probekit.eval.store.runner``.
"""
import sys

from probekit.eval.store import runner as _module

sys.modules[__name__] = _module
