"""``nn.MultiheadAttention`` for the factorized sketch: self-attention with its two linear maps in view.

torch's attention applies its fused input projection (``in_proj_weight``, [3E, E]) and its output
projection (``out_proj``) inside ``F.multi_head_attention_forward``: no module is called, so no
hook sees their inputs or outputs. While a sketch runs, :func:`exposed` stands in for the module's
forward and computes the same self-attention (the packed q = k = v case, ``batch_first`` or not,
``attn_mask`` / ``key_padding_mask``, and ``is_causal`` as torch's grad-mode forward reads it: a hint
that replaces the mask only without a key padding mask and without weights; eval mode) in three
steps: ``F.linear`` with the input projection, scaled dot-product attention per head, ``F.linear``
with the output projection. ``record(which, x, y)`` is told each linear map's input and output,
and may return a stand-in for the output. Anything else (cross-attention, separate q/k/v
weights, ``add_bias_kv``, ``add_zero_attn``, dropout in train mode) runs torch's own forward, so
those weights stay unseen and the first batch's check sends them to the dense path. On the check
batch the result is compared with torch's own forward (with grad on, as the sketch runs), and a mismatch
also falls back: the module then runs torch's forward for the rest of the pool.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch.nn import functional as F

__all__ = ["exposed", "handles"]


def handles(module: torch.nn.Module) -> bool:
    """A packed self-attention this module can write out."""
    return isinstance(module, torch.nn.MultiheadAttention) and module._qkv_same_embed_dim \
        and module.in_proj_weight is not None and module.bias_k is None and not module.add_zero_attn


def _additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    if mask is None:
        return None
    if mask.dtype == torch.bool:  # True: not allowed to attend
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


def _mask(attn_mask, key_padding_mask, is_causal: bool, b: int, h: int, length: int, dtype,
          device) -> torch.Tensor | None:
    """[B or 1, H or 1, L, L] additive mask, or None."""
    mask = _additive(attn_mask, dtype)
    if mask is None and is_causal:
        mask = torch.full((length, length), float("-inf"), dtype=dtype, device=device).triu(1)
    if mask is not None:
        mask = mask.reshape(b, h, length, length) if mask.ndim == 3 else mask.reshape(1, 1, length, length)
    pad = _additive(key_padding_mask, dtype)
    if pad is not None:
        pad = pad.reshape(b, 1, 1, length)
        mask = pad if mask is None else mask + pad
    return mask


def exposed(module: torch.nn.MultiheadAttention, record: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor],
            check: bool, failed: Callable[[], None]) -> Callable[..., Any]:
    """A stand-in for ``module.forward`` (set it on the instance; delete it to restore)."""
    own = type(module).forward

    def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        kwargs = dict(key_padding_mask=key_padding_mask, need_weights=need_weights, attn_mask=attn_mask,
                      average_attn_weights=average_attn_weights, is_causal=is_causal)
        if not (query is key and key is value) or (module.training and module.dropout > 0) or query.ndim != 3 \
                or (is_causal and attn_mask is None):  # torch refuses the last: let it say so
            return own(module, query, key, value, **kwargs)
        if is_causal and key_padding_mask is None and not need_weights:
            attn_mask = torch.ones(query.shape[1 if module.batch_first else 0], query.shape[1 if module.batch_first
                                   else 0], dtype=torch.bool, device=query.device).triu(1)  # torch: the hint wins
        is_causal = False  # otherwise torch applies attn_mask as given and ignores the hint
        x = query if module.batch_first else query.transpose(0, 1)  # [B, L, E]
        b, length, e = x.shape
        h = module.num_heads
        qkv = record("in", x, F.linear(x, module.in_proj_weight, module.in_proj_bias))  # [B, L, 3E]
        q, k, v = qkv.reshape(b, length, 3, h, e // h).permute(2, 0, 3, 1, 4)  # each [B, H, L, E / H]
        mask = _mask(attn_mask, key_padding_mask, is_causal, b, h, length, q.dtype, q.device)
        if need_weights:
            scores = q @ k.transpose(-1, -2) / math.sqrt(e // h)
            weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
            o = weights @ v
            weights = weights.mean(1) if average_attn_weights else weights
        else:
            o, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=mask), None
        o = o.transpose(1, 2).reshape(b, length, e)
        out = record("out", o, F.linear(o, module.out_proj.weight, module.out_proj.bias))
        out = out if module.batch_first else out.transpose(0, 1)
        if check:  # against torch's forward with grad on (its no-grad fast path may differ): the one differentiated
            ref = own(module, query, key, value, **kwargs)[0].detach()
            tol = 1e-4 if out.dtype in (torch.float32, torch.float64) else 2e-2
            scale = float(torch.nan_to_num(ref, nan=0.0, posinf=0.0, neginf=0.0).abs().max()) + 1e-12
            if not torch.allclose(out.detach(), ref, rtol=tol, atol=tol * scale, equal_nan=True):
                failed()  # not torch's result: the dense path takes these weights
                return own(module, query, key, value, **kwargs)
        return out, weights

    return forward
