"""Old path of :mod:`probekit.export.formats`, kept as an alias: importing it gives that module itself.

Kept because CONTRIBUTING.md showed format authors ``from probekit.export_formats import
ExportFormat``, before the modules were grouped into packages. New code imports
``probekit.export.formats``.
"""
import sys

from probekit.export import formats as _module

sys.modules[__name__] = _module
