"""Old path of :mod:`probekit.eval.store.suite`, kept as an alias: importing it gives that module itself.

Kept because docs/transitions.md named ``probekit.eval.suite.problems`` as the suite's rules, before
the modules were grouped into packages. New code imports ``probekit.eval.store.suite``.
"""
import sys

from probekit.eval.store import suite as _module

sys.modules[__name__] = _module
