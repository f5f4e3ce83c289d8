"""The layers the factorized sketch handles, and how each kind's per-sample gradient factors are formed.

For a weight W used at positions t, one example's gradient is sum_t row_t col_t^T: the output gradient
g_t on the side of W's outputs and the input a_t on the side of its inputs (``nn.Linear``: rows =
outputs; transformers' ``Conv1D``, whose weight is [in, out]: rows = inputs; ``nn.Embedding``: rows =
the token's one-hot). Biases and layer-norm gains (one dimension) are formed whole: sum_t g_t and
sum_t g_t * xhat_t. The projections themselves are ``probekit.selection.factorized_matrices``.
"""
from __future__ import annotations

from typing import Any

import torch

from probekit.selection.factorized_matrices import LayerProjection

__all__ = ["accumulate", "supported_layers"]


def _is_conv1d(module: torch.nn.Module) -> bool:
    """transformers' Conv1D (GPT-2): y = x @ W + b with W [in, out]; matched by name and shape, so
    transformers need not be imported."""
    w = getattr(module, "weight", None)
    return type(module).__name__ == "Conv1D" and isinstance(w, torch.Tensor) and w.ndim == 2 \
        and getattr(module, "nf", None) == w.shape[1]


def _kind(module: torch.nn.Module) -> str | None:
    if isinstance(module, torch.nn.Linear):
        return "linear"
    if _is_conv1d(module):
        return "conv1d"
    if isinstance(module, torch.nn.Embedding) and not module.scale_grad_by_freq and not module.sparse \
            and module.max_norm is None:  # max_norm renormalises rows in place; frequency scaling couples examples
        return "embedding"
    if isinstance(module, torch.nn.LayerNorm) and module.elementwise_affine and len(module.normalized_shape) == 1:
        return "layernorm"
    return None


def supported_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module, str]]:
    """(name, module, kind) of every layer the factorized sketch handles, in model order."""
    return [(k, m, kind) for k, m in model.named_modules() if (kind := _kind(m)) is not None]


def accumulate(kind: str, w: str | None, b: str | None, module: Any, x: torch.Tensor, g: torch.Tensor, n: int,
               m: LayerProjection | None, blocks: dict, vecs: dict) -> None:
    """Add one call of a handled layer to the batch's sums: its weight's signed [B, kr, kc] block
    A^T (sum_t row_t col_t^T) B in ``blocks`` (``m``: that weight's projection), its bias's and a layer
    norm gain's per-sample gradients [B, n] in ``vecs``. ``x``: the layer's input, ``g``: the gradient
    at its output, both with the batch first."""
    g = g.to(torch.float32)
    width = g.shape[-1]
    g = g.reshape(n, -1, width)  # [B, T, out]; T = 1 for one vector per example
    if b is not None:
        total = g[:, 0] if g.shape[1] == 1 else g.sum(1)  # one position: a view, no reduction
        vecs[b] = total if b not in vecs else vecs[b] + total
    if w is None:
        return
    if kind == "layernorm":
        xhat = torch.nn.functional.layer_norm(x.to(torch.float32), module.normalized_shape, eps=module.eps)
        gain = (g * xhat.reshape(n, -1, width)).sum(1)
        vecs[w] = gain if w not in vecs else vecs[w] + gain
        return
    if kind == "embedding":
        idx = x.reshape(n, -1)
        rows = m.a[idx] if m.a is not None else m.side(torch.nn.functional.one_hot(idx, m.kr).to(torch.float32),
                                                         "rows")
        if module.padding_idx is not None:  # torch gives the padding row no gradient
            rows = rows * (idx != module.padding_idx).unsqueeze(-1)
        cols = m.side(g, "cols")
    else:
        a = x.to(torch.float32).reshape(n, -1, x.shape[-1])  # [B, T, in]
        rows, cols = (m.side(g, "rows"), m.side(a, "cols")) if kind == "linear" else \
            (m.side(a, "rows"), m.side(g, "cols"))  # Conv1D: W is [in, out]
    # [B, kr, kc]: A^T (sum_t row_t col_t^T) B; one position: an outer product, cheaper than bmm
    blk = rows.transpose(1, 2) * cols if rows.shape[1] == 1 else rows.transpose(1, 2) @ cols
    blocks[w] = blk if w not in blocks else blocks[w] + blk
