"""TF-IDF + truncated SVD (latent semantic analysis): the default text embedder.

No model download, deterministic for a fixed seed, and fast on 2 cores. The
rows are L2-normalised after the SVD so that Euclidean k-means on them behaves
like cosine clustering of documents.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from probekit.embedders.base import Embedder
from probekit.errors import ProbekitUsageError
from probekit.params import Interval

if TYPE_CHECKING:
    from probekit.pool import Pool


class TfidfSvdEmbedder(Embedder):
    """TF-IDF over word 1-2 grams, reduced by truncated SVD and L2-normalised."""

    name: ClassVar[str] = "tfidf"
    _constraints: ClassVar[dict[str, Any]] = {
        "text_field": str,
        "n_components": Interval(int, 1, 4096),
        "max_features": Interval(int, 1, None),
        "seed": Interval(int, 0, None),
    }

    def __init__(self, *, text_field: str = "text", n_components: int = 128,
                 max_features: int = 50_000, seed: int = 0) -> None:
        self.text_field = text_field
        self.n_components = n_components  # 128: enough topics for coverage, cheap k-means
        self.max_features = max_features
        self.seed = seed

    def _embed(self, pool: "Pool") -> np.ndarray:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize

        if self.text_field not in pool.columns:
            raise ProbekitUsageError(
                f"text column {self.text_field!r} is not in the pool; columns: {', '.join(pool.columns)}."
            )
        # Fit on the rows sorted by id: the randomized SVD (and its near-degenerate
        # directions) then does not depend on the row order of the pool.
        order = pool.canonical_order
        column = pool.column(self.text_field)[order]
        texts = ["" if t is None else str(t) for t in column.tolist()]
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), max_features=self.max_features,
                                     sublinear_tf=True, dtype=np.float32)
        try:
            tfidf = vectorizer.fit_transform(texts)  # [N, vocab] sparse
        except ValueError as exc:  # empty vocabulary
            raise ProbekitUsageError(f"text column {self.text_field!r} has no usable words: {exc}.") from None
        k = min(self.n_components, tfidf.shape[1] - 1, tfidf.shape[0] - 1)
        if k < 1:
            features = normalize(tfidf.toarray())
        else:
            svd = TruncatedSVD(n_components=k, random_state=self.seed, algorithm="randomized")
            features = normalize(svd.fit_transform(tfidf))
        out = np.empty_like(features)
        out[order] = features  # back to the pool's row order
        return out
