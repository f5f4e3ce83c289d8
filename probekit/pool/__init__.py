"""Candidate pools: the examples a selector may pick probes from.

- ``core``: :class:`Pool` (stable ids, content fingerprints, rows, columns);
- ``files``: reading pool files (jsonl, json, csv, parquet, arrow, ``datasets`` directories),
  the one boundary to the file loaders of ``datasets``;
- ``builtin``: the pools that need no download (``builtin:digits``, ``builtin:toy-text``).

``from probekit.pool import Pool`` (the path of the module this package replaced) keeps working;
the names load lazily.
"""
from __future__ import annotations

from probekit._lazy import lazy_names

_LAZY = {
    "ID_COLUMN": "probekit.pool.core",
    "Pool": "probekit.pool.core",
    "canonical_json": "probekit.pool.core",
    "table_fingerprint": "probekit.pool.core",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
