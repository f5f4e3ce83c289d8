"""probekit: design, score and monitor probe sets for the dynamical 2RDM.

Importing probekit is cheap on purpose (``probekit --help`` must stay fast):
heavy libraries (torch, datasets, faiss, transformers) are imported inside the
functions that need them, and the public names below load lazily.
"""
from __future__ import annotations

import os as _os

from probekit._lazy import lazy_names as _lazy_names
from probekit._version import __version__

# Why this block exists (docs/design.md §2): ``selectors/`` and ``eval/`` live beside
# ``probekit/`` in the repository, not inside it, and carry no ``__init__.py`` so
# that they never become the top-level names ``selectors`` (a standard-library
# module) or ``eval`` (a builtin).  A wheel maps them into the package
# (pyproject ``package-dir``).  A source checkout, an editable install, or Python
# started from the repository root (where this local ``probekit/`` shadows an
# installed one) has no ``probekit/selectors`` directory, so we add the
# repository root to this package's search path: ``probekit.selectors`` then
# resolves to ``<root>/selectors`` as a namespace portion.  The checks on
# pyproject.toml and both directories keep this from firing anywhere else.
_here = _os.path.dirname(_os.path.abspath(__file__))
if not _os.path.isdir(_os.path.join(_here, "selectors")):
    _root = _os.path.dirname(_here)
    if all(
        _os.path.exists(_os.path.join(_root, name))
        for name in ("pyproject.toml", "selectors", "eval")
    ):
        __path__.append(_root)  # noqa: F821 - __path__ is defined for packages

_LAZY = {
    "DynamicalRDM": "probekit.rdm.streaming",
    "RDMStats": "probekit.rdm.spectral",
    "RDMSeries": "probekit.rdm.offline",
    "rdm_series": "probekit.rdm.offline",
    "window_stats": "probekit.rdm.offline",
    "gaussian_rdm": "probekit.rdm.gaussian",
    "gaussian_loss_matrix": "probekit.rdm.gaussian",
    "Pool": "probekit.pool.core",
    "ProbeSet": "probekit.probeset.core",
    "Provenance": "probekit.probeset.core",
    "Monitor": "probekit.monitor.core",
}

__all__ = ["__version__", *_LAZY]
# PEP 562 lazy attributes: `probekit.Pool` imports datasets only when used.
__getattr__, __dir__ = _lazy_names(__name__, _LAZY)
