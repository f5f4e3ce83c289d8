"""Hidden states of your own torch model, through a callable.

``fn`` maps one batch of pool rows to a ``[B, d]`` tensor (or numpy array) of
hidden states. The batch is either

* ``input_field``: a float32 tensor built from a numeric column, ``[B, k]`` for a
  list column of length k and ``[B, 1]`` for a scalar column; or
* ``text_field``: a ``list[str]`` of B texts (missing texts become ``""``).

For example, the penultimate layer of a classifier::

    body = torch.nn.Sequential(*list(classifier.children())[:-1])
    TorchModelEmbedder(fn=body, input_field="pixels").embed(pool)

``fn`` runs under ``torch.no_grad()``. When it is a ``torch.nn.Module`` it is
put in eval mode for the call (dropout off, so the features are deterministic)
and back in its previous mode afterwards, and the batch is moved to the device
of its first parameter; a plain function gets CPU tensors and moves them
itself. Rows are run in the pool's canonical (id-sorted) order and put back in
the pool's order, so the batches, and the features, do not depend on the row
order of the pool.

The embedder pickles when ``fn`` does: a module-level function or an
``nn.Module`` do, a lambda or a local function do not.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np

from probekit.embedders.base import Embedder
from probekit.embedders.column import column_matrix
from probekit.errors import ProbekitUsageError
from probekit.params import AnyOf, Interval

if TYPE_CHECKING:
    from probekit.pool import Pool


class _CallableConstraint:
    """Accepts anything callable (a function, a bound method, an ``nn.Module``)."""

    def accepts(self, value: Any) -> bool:
        return callable(value)

    def describe(self) -> str:
        return "a callable (a function or a torch.nn.Module)"


def _describe_output(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"a {type(value).__name__} of shape {tuple(shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


class TorchModelEmbedder(Embedder):
    """Hidden states of your own torch model: ``fn(batch) -> [B, d]``."""

    name: ClassVar[str] = "torch"
    _constraints: ClassVar[dict[str, Any]] = {
        "fn": _CallableConstraint(),
        "input_field": AnyOf(None, str),
        "text_field": AnyOf(None, str),
        "batch_size": Interval(int, 1, None),
    }

    def __init__(self, *, fn: Callable[[Any], Any], input_field: str | None = None,
                 text_field: str | None = None, batch_size: int = 256) -> None:
        self.fn = fn
        self.input_field = input_field
        self.text_field = text_field
        self.batch_size = batch_size  # 256: small models on CPU; memory grows with it

    def _inputs(self, pool: "Pool") -> Any:
        """The whole pool's input: a float32 [N, k] matrix or a list of N strings."""
        import pyarrow as pa

        if (self.input_field is None) == (self.text_field is None):
            raise ProbekitUsageError(
                f"{type(self).__name__} needs exactly one of 'input_field' (a numeric or list column) "
                f"and 'text_field' (a text column). Got input_field={self.input_field!r}, "
                f"text_field={self.text_field!r} instead."
            )
        field = self.input_field if self.input_field is not None else self.text_field
        if field not in pool.columns:
            raise ProbekitUsageError(f"column {field!r} is not in the pool; columns: {', '.join(pool.columns)}.")
        if self.text_field is not None:
            return ["" if t is None else str(t) for t in pool.column(field).tolist()]
        typ = pool.dataset.data.schema.field(field).type
        if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
            x = column_matrix(pool, field)
        elif pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ):
            x = pool.column(field).astype(np.float64)[:, None]
        else:
            raise ProbekitUsageError(
                f"input column {field!r} must hold numbers or lists of numbers; it holds {typ}. "
                "Use text_field for text."
            )
        x = np.asarray(x, dtype=np.float32)
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            raise ProbekitUsageError(
                f"input column {field!r} has {int(bad.sum())} rows with missing, NaN or inf values "
                f"(first at row {int(np.nonzero(bad)[0][0])})."
            )
        return x

    def _embed(self, pool: "Pool") -> np.ndarray:
        import torch

        inputs = self._inputs(pool)
        fn = self.fn
        module = fn if isinstance(fn, torch.nn.Module) else None
        device = torch.device("cpu")
        if module is not None:
            first = next(module.parameters(), None)
            device = first.device if first is not None else device
        order = pool.canonical_order
        blocks: list[np.ndarray] = []
        was_training = module.training if module is not None else False
        try:
            if module is not None:
                module.eval()
            with torch.no_grad():
                from probekit.progress import Progress

                starts = range(0, len(order), self.batch_size)
                bar = Progress(len(starts), "torch embed", unit="batch", every=10.0,
                               logger=logging.getLogger(__name__), line="{desc}: batch {n}/{total}")
                for start in bar.track(starts):
                    rows = order[start:start + self.batch_size]
                    if isinstance(inputs, list):
                        batch = [inputs[i] for i in rows]
                    else:
                        batch = torch.from_numpy(inputs[rows]).to(device)  # [B, k]
                    blocks.append(self._check_output(fn(batch), len(rows), blocks))
        finally:
            if module is not None:
                module.train(was_training)
        features = np.concatenate(blocks, axis=0)
        out = np.empty_like(features)
        out[order] = features  # back to the pool's row order
        return out

    def _check_output(self, value: Any, n_rows: int, previous: list) -> np.ndarray:
        import torch

        owner = f"{type(self).__name__}'s fn"
        if isinstance(value, torch.Tensor):
            array = value.detach().to("cpu", torch.float32).numpy()
        elif isinstance(value, np.ndarray):
            array = value
        else:
            raise ProbekitUsageError(
                f"{owner} must return a [B, d] torch.Tensor or numpy array of hidden states; "
                f"it returned {_describe_output(value)} for a batch of {n_rows} rows."
            )
        if array.ndim != 2 or array.shape[0] != n_rows or array.shape[1] == 0:
            raise ProbekitUsageError(
                f"{owner} must return a [B, d] tensor of hidden states (B = {n_rows}, the batch size); "
                f"it returned {_describe_output(value)}."
            )
        if previous and array.shape[1] != previous[0].shape[1]:
            raise ProbekitUsageError(
                f"{owner} must return the same width d for every batch; it returned "
                f"d = {array.shape[1]} for batch {len(previous)} but d = {previous[0].shape[1]} for batch 0."
            )
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise ProbekitUsageError(f"{owner} must return numbers; it returned dtype {array.dtype}.")
        return np.asarray(array, dtype=np.float32)
