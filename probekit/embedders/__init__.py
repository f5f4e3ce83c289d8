"""Embedders: pool rows -> a [N, d] float32 feature matrix for the geometric selectors.

| name | class | for |
|---|---|---|
| ``tfidf`` | ``TfidfSvdEmbedder`` | text; TF-IDF + truncated SVD (scikit-learn, no download); the text default |
| ``numeric`` | ``NumericEmbedder`` | numeric scalar and fixed-length list columns, standardised |
| ``column`` | ``ColumnEmbedder`` | a precomputed embedding column |
| ``transformer`` | ``TransformerEmbedder`` | mean-pooled hidden states of a local ``transformers`` encoder |
| ``torch`` | ``TorchModelEmbedder`` | hidden states of your own torch model, through a callable |

``resolve_embedder`` picks one when the caller did not: an embedding field,
else a text field (TF-IDF), else the numeric columns.
"""
from __future__ import annotations

from probekit.embedders.base import Embedder, check_features, resolve_embedder
from probekit.embedders.column import ColumnEmbedder
from probekit.embedders.numeric import NumericEmbedder
from probekit.embedders.tfidf import TfidfSvdEmbedder

__all__ = [
    "ColumnEmbedder",
    "Embedder",
    "NumericEmbedder",
    "TfidfSvdEmbedder",
    "TorchModelEmbedder",
    "TransformerEmbedder",
    "check_features",
    "resolve_embedder",
]


def __getattr__(name: str):
    # torch and transformers load only when these are used.
    if name == "TransformerEmbedder":
        from probekit.embedders.transformer import TransformerEmbedder

        return TransformerEmbedder
    if name == "TorchModelEmbedder":
        from probekit.embedders.torch_model import TorchModelEmbedder

        return TorchModelEmbedder
    raise AttributeError(f"module 'probekit.embedders' has no attribute {name!r}")
