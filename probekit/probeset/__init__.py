"""Probe sets: a ranked selection of pool examples plus where it came from.

- ``core``: :class:`ProbeSet` and its :class:`Provenance`;
- ``file``: the canonical probe-set file (one Parquet file, provenance in its metadata);
- ``coverage``: how well a probe set covers its pool (what ``probekit inspect`` prints).

Exporting a probe set to other tools' formats is :mod:`probekit.export`.
``from probekit.probeset import ProbeSet`` (the path of the module this package replaced) keeps
working; the names load lazily.
"""
from __future__ import annotations

from probekit._lazy import lazy_names

_LAZY = {
    "SCHEMA_VERSION": "probekit.probeset.core",
    "ProbeSet": "probekit.probeset.core",
    "Provenance": "probekit.probeset.core",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
