"""The benchmark: probe designs scored on the reference transitions (``probekit bench``).

- ``grid``: :class:`BenchGrid`, the axes (families, designs, sizes, seeds, signals, rules) and
  the ``QUICK`` and ``FULL`` grids;
- ``designs``: a design is any registered selection strategy with its parameters;
- ``run``: :func:`run_grid`, the cells computed in worker processes, resumable;
- ``cells``: the cell type, written and read there and nowhere else (``results.json``).

``from probekit.eval.bench import BenchGrid, run_grid`` (the path of the module this package
replaced) keeps working; the names load lazily.
"""
from __future__ import annotations

from probekit._lazy import lazy_names

_LAZY = {
    **{n: "probekit.eval.bench.grid" for n in ("DESIGNS", "FULL", "QUICK", "BenchGrid", "RuleSpec",
                                                "transition_families")},
    "Design": "probekit.eval.bench.designs",
    "GridResult": "probekit.eval.bench.run",
    "run_grid": "probekit.eval.bench.run",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_names(__name__, _LAZY)
