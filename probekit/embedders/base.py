"""The embedder contract and the automatic choice of an embedder for a pool."""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from probekit.errors import ProbekitUsageError
from probekit.params import ParamsMixin, validate
from probekit.progress import stage

if TYPE_CHECKING:
    from probekit.pool import Pool

log = logging.getLogger(__name__)


class Embedder(ParamsMixin, ABC):
    """``embed(pool) -> [len(pool), d] float32``: one row per pool row, same order.

    Constructors only store; ``embed`` validates (``_constraints``) and must be
    deterministic for fixed parameters, so a selection is reproducible.
    """

    name: ClassVar[str] = ""
    _constraints: ClassVar[dict[str, Any]] = {}

    def embed(self, pool: "Pool") -> np.ndarray:
        validate(type(self).__name__, self.get_params(), self._constraints)
        with stage(f"embedding {len(pool)} examples ({self.name or type(self).__name__})", logger=log):
            features = self._embed(pool)
        return check_features(features, len(pool), owner=f"{type(self).__name__}.embed", ids=pool.ids)

    @abstractmethod
    def _embed(self, pool: "Pool") -> np.ndarray:
        """[N, d] features of the pool rows."""


def check_features(features: Any, n_rows: int, owner: str, ids: Any = None) -> np.ndarray:
    """Contiguous finite float32 [n_rows, d], or a one-line error saying what is wrong."""
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] != n_rows or x.shape[1] == 0:
        raise ProbekitUsageError(
            f"{owner} must give a [{n_rows}, d] matrix (one row per pool example); "
            f"got shape {x.shape}."
        )
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ProbekitUsageError(f"{owner} must give numbers; got dtype {x.dtype}.")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.nonzero(bad.any(axis=1))[0][0])
        # Name the example by id: selectors see the pool in id order, so a row
        # number would not match the user's file.
        where = f"example {ids[row]!r}" if ids is not None else f"row {row}"
        raise ProbekitUsageError(f"{owner} gave NaN or inf features (first at {where}).")
    return x


def resolve_embedder(
    pool: "Pool",
    embedder: Any = None,
    *,
    text_field: str | None = None,
    embedding_field: str | None = None,
) -> Embedder:
    """The embedder to use: the one given, else one chosen from the pool's columns.

    Order: ``embedding_field`` (or a column named ``embedding``) -> its values;
    ``text_field`` (or a column named ``text``) -> TF-IDF + SVD; otherwise the
    numeric columns, standardised.
    """
    from probekit.embedders.column import ColumnEmbedder
    from probekit.embedders.numeric import NumericEmbedder
    from probekit.embedders.tfidf import TfidfSvdEmbedder

    if embedder is not None:
        if not isinstance(embedder, Embedder):
            raise ProbekitUsageError(
                f"The 'embedder' parameter must be a probekit Embedder. Got {type(embedder).__name__} instead."
            )
        return embedder
    for name in (embedding_field, text_field):
        if name is not None and name not in pool.columns:
            raise ProbekitUsageError(
                f"column {name!r} is not in the pool; columns: {', '.join(pool.columns)}."
            )
    if embedding_field is not None:
        return ColumnEmbedder(field=embedding_field)
    if text_field is not None:
        return TfidfSvdEmbedder(text_field=text_field)
    if "embedding" in pool.columns:
        return ColumnEmbedder(field="embedding")
    if "text" in pool.columns:
        return TfidfSvdEmbedder(text_field="text")
    return NumericEmbedder()
