"""The random matrices of the factorized sketch, one per parameter, and how they are applied.

A 2-D parameter [rows, cols] is projected by M = (A kron B) C: A [rows, kr] and B [cols, kc] with
N(0, 1/k) entries (a side no wider than k is kept as it is: kr = rows), then C [kr kc, dim], a
CountSketch (Charikar et al., 2002). A 1-D parameter is a [n, 1] matrix with both sides kept, so it
is CountSketched as it is. Every draw is seeded from (seed, parameter name, role) through the
projection path's streams (``probekit.selection.grad_sketch._stream_seed``), so a matrix depends
on nothing else: not the batch, the device, or which other parameters are sketched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["LayerProjection", "gaussian", "matrix_projection", "vector_projection"]


def gaussian(seed: int, key: str, rows: int, cols: int, device: Any) -> torch.Tensor:
    from probekit.selection.grad_sketch import _gaussian_chunk  # the projection path's seeded streams

    return _gaussian_chunk(seed, key, 0, rows, cols, torch.float32, device)


def _signs(seed: int, key: str, n: int, device: Any) -> torch.Tensor:
    from probekit.selection.grad_sketch import _stream_seed

    gen = torch.Generator(device="cpu").manual_seed(_stream_seed(seed, key, 1))
    return (torch.randint(0, 2, (n,), generator=gen).to(torch.float32) * 2 - 1).to(device)


def _buckets(seed: int, key: str, n: int, dim: int, device: Any) -> torch.Tensor:
    from probekit.selection.grad_sketch import _stream_seed

    gen = torch.Generator(device="cpu").manual_seed(_stream_seed(seed, key, 0))
    return torch.randint(0, dim, (n,), generator=gen).to(device)


@dataclass
class LayerProjection:
    """The projection of one parameter: A [rows, kr] and B [cols, kc] (None: that side kept as it is), then C
    [kr kc, dim], a CountSketch (Charikar et al., 2002): entry (a, b) of the block is added, with the sign
    sr[a] sc[b], to coordinate bucket[a kc + b]. It costs kr kc per example where a dense C costs kr kc dim.
    The signs are folded into A and B (an identity side multiplies by its signs), so the block arrives
    signed. A 1-D parameter is a [n, 1] matrix with both sides kept."""

    a: torch.Tensor | None  # signed: A diag(sr)
    b: torch.Tensor | None  # signed: B diag(sc)
    sr: torch.Tensor
    sc: torch.Tensor
    bucket: torch.Tensor
    dim: int

    @property
    def kr(self) -> int:
        return len(self.sr)

    @property
    def kc(self) -> int:
        return len(self.sc)

    @property
    def c(self) -> torch.Tensor:
        """C as a dense [kr kc, dim] matrix, signs included (for the tests and the whole matrix)."""
        c = torch.zeros(self.kr * self.kc, self.dim, device=self.sr.device)
        c[torch.arange(len(self.bucket), device=c.device), self.bucket] = torch.outer(self.sr, self.sc).reshape(-1)
        return c

    def unsigned(self, which: str) -> torch.Tensor | None:
        """A or B without the folded signs (None: identity)."""
        m, s = (self.a, self.sr) if which == "rows" else (self.b, self.sc)
        return None if m is None else m * s

    def side(self, x: torch.Tensor, which: str) -> torch.Tensor:
        """[..., rows or cols] -> [..., kr or kc], signed."""
        m, s = (self.a, self.sr) if which == "rows" else (self.b, self.sc)
        return x * s if m is None else x @ m

    def mix(self, blocks: torch.Tensor, into: torch.Tensor | None = None) -> torch.Tensor:
        """Signed [B, kr, kc] blocks -> [B, dim] (added to ``into`` when given)."""
        flat = blocks.reshape(blocks.shape[0], -1)
        if into is None:
            into = torch.zeros(flat.shape[0], self.dim, device=flat.device)
        return into.index_add_(1, self.bucket, flat)

    def project(self, grad: torch.Tensor) -> torch.Tensor:
        """[B, rows, cols] gradients -> [B, dim] (for the check)."""
        g = self.side(grad.to(torch.float32).transpose(1, 2), "rows").transpose(1, 2)  # [B, kr, cols]
        return self.mix(self.side(g, "cols"))


def matrix_projection(seed: int, name: str, rows: int, cols: int, k: int, dim: int, device: Any) -> LayerProjection:
    sr = _signs(seed, f"factorized:{name}:rows", min(rows, k), device)
    sc = _signs(seed, f"factorized:{name}:cols", min(cols, k), device)
    a = None if rows <= k else gaussian(seed, f"factorized:{name}:rows", rows, k, device) * sr
    b = None if cols <= k else gaussian(seed, f"factorized:{name}:cols", cols, k, device) * sc
    bucket = _buckets(seed, f"factorized:{name}:mix", len(sr) * len(sc), dim, device)
    return LayerProjection(a, b, sr, sc, bucket, dim)


def vector_projection(seed: int, name: str, numel: int, dim: int, device: Any) -> LayerProjection:
    """A 1-D parameter's per-sample gradient (sum_t g_t: a bias; sum_t g_t xhat_t: a layer-norm gain) is
    formed, [B, n], and CountSketched: O(n) per example, and its variance is at most a dense Gaussian's."""
    sr = _signs(seed, f"factorized:{name}", numel, device)
    return LayerProjection(None, None, sr, torch.ones(1, device=device),
                           _buckets(seed, f"factorized:{name}", numel, dim, device), dim)
