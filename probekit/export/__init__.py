"""Probe sets in the formats other tools read: ``probekit export`` and its Python twin.

- ``formats``: every format declared once (:class:`~probekit.export.formats.ExportFormat`:
  name, suffix, pool use, options, writer, reader), built-ins and plugins through one registry;
- ``writers``: :func:`export` and the built-in writers (``to_jsonl``, ``to_csv``,
  ``to_datasets``, ``to_npy``, ``to_lm_eval``);
- ``readers``: :func:`read` and the built-in readers (``read_jsonl``, ``read_csv``,
  ``read_npy``, ``read_lm_eval``).

``from probekit.export import read_lm_eval`` (the path of the module this package replaced)
keeps working; the names load lazily, and ``FORMATS`` is the registered format names, read when
asked (a format registered later is in it).
"""
from __future__ import annotations

from typing import Any

from probekit._lazy import lazy_names

_WRITERS = ("DATASETS_EXPORT", "export", "is_datasets_directory", "to_csv", "to_datasets", "to_jsonl",
            "to_lm_eval", "to_npy")
_READERS = ("read", "read_csv", "read_jsonl", "read_lm_eval", "read_npy")
_LAZY = {**{n: "probekit.export.writers" for n in _WRITERS}, **{n: "probekit.export.readers" for n in _READERS}}

__all__ = sorted([*_LAZY, "FORMATS"])
_lazy_getattr, __dir__ = lazy_names(__name__, {**_LAZY, "FORMATS": __name__})


def __getattr__(name: str) -> Any:
    if name == "FORMATS":  # the registered formats, read when asked: a format registered later is in it
        from probekit.export.formats import format_names

        return tuple(format_names())
    return _lazy_getattr(name)
