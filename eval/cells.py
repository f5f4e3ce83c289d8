"""Old path of :mod:`probekit.eval.bench.cells`, kept as an alias: importing it gives that module itself.

Kept because README.md named ``probekit.eval.cells`` as the schema of ``results.json``, before the
modules were grouped into packages. New code imports ``probekit.eval.bench.cells``.
"""
import sys

from probekit.eval.bench import cells as _module

sys.modules[__name__] = _module
