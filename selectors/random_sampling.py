"""Random probes: uniform, or stratified by a metadata column.

Uniform sampling is the baseline every other strategy must beat (the harness
always scores it beside them). Stratified sampling keeps every value of a
column (a class, a slice, a protected attribute) represented:

- ``proportional``: each stratum gets its share of the pool;
- ``balanced``: every stratum gets the same share (rare strata oversampled)
  until it runs out.

Nesting comes from a sequential apportionment (``probekit.selection.apportionment``,
Tijdeman's chairman rule): probe k goes to a stratum chosen from the counts of
probes 1..k-1, which keeps every stratum within one probe of its target share
at every prefix, and within a stratum probes come in one seeded random order.
So the first m of a selection of n are the selection of m.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from probekit.params import AnyOf, Options
from probekit.selection.apportionment import apportion
from probekit.selectors.base import Ranking, Selector

if TYPE_CHECKING:
    from probekit.pool import Pool

MISSING = "<missing>"


def stratum_labels(pool: "Pool", column: str) -> np.ndarray:
    """The column's values as strings (missing values as ``<missing>``)."""
    values = pool.column(column).tolist()
    return np.array([MISSING if v is None or (isinstance(v, float) and v != v) else str(v) for v in values],
                    dtype=object)


class RandomSelector(Selector):
    """Uniform random probes, or stratified by a column (proportional or balanced)."""

    name: ClassVar[str] = "random"
    stochastic: ClassVar[bool] = True
    _constraints: ClassVar[dict[str, Any]] = {
        "stratify": AnyOf(None, str),
        "mode": Options("proportional", "balanced"),
    }

    def __init__(self, *, stratify: str | None = None, mode: str = "proportional") -> None:
        self.stratify = stratify
        self.mode = mode

    def _check_params(self, pool: "Pool") -> None:
        self._require_columns(pool, "stratify")

    def _rank(self, pool: "Pool", n: int, seed: int) -> Ranking:
        rng = np.random.default_rng(seed)
        if self.stratify is None:
            return Ranking(indices=rng.permutation(len(pool))[:n])
        labels = stratum_labels(pool, self.stratify)
        names = sorted(set(labels.tolist()))
        orders = {s: rng.permutation(np.flatnonzero(labels == s)) for s in names}
        if self.mode == "balanced":
            shares = {s: 1.0 for s in names}
        else:
            shares = {s: float(len(orders[s])) for s in names}
        idx, slices = apportion(orders, shares, n)
        return Ranking(indices=idx, slices=slices, info={"strata": {s: len(orders[s]) for s in names}})

    @classmethod
    def example(cls) -> "RandomSelector":
        return cls()
