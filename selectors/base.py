"""The selector contract (importable as ``probekit.selectors.base``).

A selector turns a candidate pool into a ranked probe set:
``select(pool, n, seed) -> ProbeSet``. The contract, shared by every strategy
(docs/design.md §3, docs/style.md) and checked by ``probekit.testing``:

- the constructor only stores its keyword arguments (scikit-learn style), so
  ``get_params`` / ``set_params`` and construction behave the same; parameters
  are declared once in ``_constraints`` and validated when ``select`` runs;
- the result is a *ranking*: the first m probes of a selection of n are the
  selection of m (nested probe sets, like a basis-set family). Strategies get
  this by construction: greedy or sequential orderings whose first m steps
  never depend on n;
- a selector sees only what exists at selection time (the pool, its metadata,
  a checkpoint's embeddings or gradients), never future losses;
- row order never matters: ``select`` hands the strategy the pool in its
  canonical order (sorted by id) and maps the ranking back, so shuffling the
  rows of a data file cannot change which probes are chosen.

A strategy implements ``_rank(pool, n, seed) -> Ranking`` on the canonical
pool; everything else (validation, provenance, the ProbeSet) happens here.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from probekit.errors import ProbekitError, ProbekitUsageError
from probekit.params import Interval, ParamsMixin, validate

if TYPE_CHECKING:  # imported lazily at run time (datasets is heavy)
    from probekit.pool import Pool
    from probekit.probeset import ProbeSet


@dataclass(frozen=True)
class Ranking:
    """What a strategy returns: positions in the canonical pool, best first."""

    indices: np.ndarray  # [n] int positions into the canonical pool
    scores: np.ndarray | None = None  # [n] e.g. cluster mass, distance covered
    slices: Sequence[str | None] | None = None  # [n] slice label per probe
    info: dict = field(default_factory=dict)  # facts for the provenance


def describe_param(value: Any) -> Any:
    """A JSON-ready stand-in for a parameter value in the provenance."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [describe_param(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe_param(v) for k, v in value.items()}
    if isinstance(value, ParamsMixin):
        return {"class": type(value).__name__, "params": describe_param(value.get_params())}
    if isinstance(value, np.ndarray):
        return f"<array shape={list(value.shape)} dtype={value.dtype}>"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    name = getattr(value, "__qualname__", None) or type(value).__qualname__
    module = getattr(value, "__module__", None) or type(value).__module__
    return f"<{module}.{name}>"


def _pool_source(pool: "Pool") -> str:
    """Where the pool came from, as an absolute path when it is a file (inspect and
    export reload it from there, whatever directory they run in)."""
    name = pool.name
    if name.startswith("builtin:") or name.startswith("<"):
        return name
    path = Path(name)
    return str(path.resolve()) if path.exists() else name


class Selector(ParamsMixin, ABC):
    """Base class of every selection strategy."""

    #: Registry name of the strategy (e.g. "random", "cluster").
    name: ClassVar[str] = ""
    #: Whether different seeds are expected to give different selections.
    stochastic: ClassVar[bool] = True
    #: Constructor parameter -> constraint (see probekit.params).
    _constraints: ClassVar[dict[str, Any]] = {}
    #: Groups of parameters that are alternatives (at most one of a group is set): where the
    #: selector's inputs come from. The benchmark fills a design's parameters from what a family
    #: offers (``ReferenceRun.design_fields``) and sets only the first of a group it offers.
    alternatives: ClassVar[tuple[tuple[str, ...], ...]] = (("embedder", "text_field", "embedding_field"),)

    # -- hooks for strategies -------------------------------------------------------
    @abstractmethod
    def _rank(self, pool: "Pool", n: int, seed: int) -> Ranking:
        """The first n positions of this strategy's ranking of the canonical pool."""

    def _check_params(self, pool: "Pool") -> None:
        """Cross-parameter and pool-dependent checks (columns exist, ...); raise usage errors."""

    def _require_columns(self, pool: "Pool", *param_names: str, hint: str = "") -> None:
        """Each named parameter that holds a column name must name a column of the pool."""
        for name in param_names:
            column = getattr(self, name)
            if column is not None and column not in pool.columns:
                raise ProbekitUsageError(
                    f"The {name!r} parameter of {type(self).__name__} names column {column!r}, which the "
                    f"pool does not have; columns: {', '.join(pool.columns)}{hint}."
                )

    @classmethod
    def example(cls) -> "Selector":
        """An instance that works on ``probekit.testing.make_test_pool()`` (conformance suite)."""
        return cls()

    # -- the contract ---------------------------------------------------------------
    def validate_params(self) -> dict[str, Any]:
        params = self.get_params()
        validate(type(self).__name__, params, self._constraints)
        return params

    def select(self, pool: "Pool", n: int, seed: int = 0) -> "ProbeSet":
        """Return the first ``n`` probes of this strategy's ranking of ``pool``."""
        from probekit.pool import Pool
        from probekit.probeset import ProbeSet

        owner = f"{type(self).__name__}.select"
        if not isinstance(pool, Pool):
            raise ProbekitUsageError(f"{owner} needs a probekit Pool. Got {type(pool).__name__} instead.")
        validate(owner, {"n": n, "seed": seed},
                 {"n": Interval(int, 1, len(pool)), "seed": Interval(int, 0, None)})
        self.validate_params()
        order = pool.canonical_order
        canonical = pool if np.array_equal(order, np.arange(len(pool))) else pool.reorder(order)
        self._check_params(canonical)
        ranking = self._rank(canonical, int(n), int(seed))
        idx = self._checked_indices(ranking, int(n), len(pool))
        slices = None if ranking.slices is None else list(ranking.slices)
        scores = None if ranking.scores is None else np.asarray(ranking.scores, dtype=np.float64)
        return ProbeSet.from_indices(
            pool, order[idx], strategy=self.name, params=self.provenance_params(),
            seed=int(seed), slices=slices, scores=scores,
            info={"pool": _pool_source(pool), "pool_id_field": pool.id_field,
                  "pool_content_fingerprint": pool.content_fingerprint, **describe_param(ranking.info)},
        )

    def provenance_params(self) -> dict[str, Any]:
        return {k: describe_param(v) for k, v in self.get_params().items()}

    def _checked_indices(self, ranking: Ranking, n: int, size: int) -> np.ndarray:
        # A broken strategy is a bug in probekit (or a plugin), not user error.
        idx = np.asarray(ranking.indices)
        problem = None
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            problem = f"indices of dtype {idx.dtype} and shape {idx.shape}"
        elif idx.size != n:
            problem = f"{idx.size} indices for n={n}"
        elif idx.size and (idx.min() < 0 or idx.max() >= size):
            problem = f"indices outside [0, {size - 1}]"
        elif np.unique(idx).size != idx.size:
            problem = "repeated indices"
        for name, values in (("scores", ranking.scores), ("slices", ranking.slices)):
            if problem is None and values is not None and len(values) != n:
                problem = f"{len(values)} {name} for n={n}"
        if problem:
            raise ProbekitError(f"selector {self.name or type(self).__name__!r} returned an invalid ranking: {problem}.")
        return idx.astype(np.int64)
