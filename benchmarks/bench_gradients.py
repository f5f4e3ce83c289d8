"""Per-sample gradient sketches: the torch.func vmap path vs a per-example backward loop.

For two models, a small MLP and a tiny transformer (built from a config, no
download), each on 10k examples, per-example milliseconds of

  - vmap: ``probekit.selection.grad_sketch.gradient_sketches`` (grad + vmap over batches
    of 256, then the batched Gaussian projection to dim 256);
    ``grads`` is the per-sample-gradient share alone (``per_sample_gradients``
    over the same batches, timed in a separate pass);
  - loop: one example at a time, forward + ``loss.backward()``, the ``.grad``
    tensors flattened and projected by the same matrix (``projection_matrix``):
    ``backward`` is its forward + backward share. The loop is timed on the
    first 500 examples (100 with --quick) and its per-example cost
    extrapolated to the pool: it is the slow path;

and the ratios loop / vmap, end to end and for the gradients alone. The loop
projects each example on its own (a matrix-vector product that reads all of R,
P x dim floats, per example: memory-bound); ``loop*/vmap`` is the end-to-end
ratio had the loop batched its projection like the vmap path does (its
backward share plus the vmap path's projection share), the floor that the
dense projection (P x dim multiply-adds per example) puts under any path. Both paths
project with the same matrix and must give the same sketches on the loop's
examples: ``rel.diff`` is max |vmap - loop| / max |loop|. Each model runs with
one torch thread and with the default thread count, side by side.

Target (issue): >= 10x.

    python benchmarks/bench_gradients.py            # 10k examples, ~6 minutes on 2 shared cores
    python benchmarks/bench_gradients.py --quick    # 2k examples
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from probekit.selection.grad_sketch import gradient_sketches, per_sample_gradients, projection_matrix

DIM, BATCH = 256, 256


@dataclass
class TinyTransformerConfig:
    vocab: int = 512  # small vocabulary: the embedding stays ~1/3 of the parameters
    seq_len: int = 16
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    d_ff: int = 128  # 2 x d_model: tiny, so per-example overhead, not flops, dominates the loop
    n_classes: int = 4


class TinyTransformer(nn.Module):
    """Token + learned position embeddings -> TransformerEncoder -> mean pool -> linear head."""

    def __init__(self, cfg: TinyTransformerConfig) -> None:
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab, cfg.d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(cfg.seq_len, cfg.d_model))
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, dim_feedforward=cfg.d_ff,
                                           dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, T] -> [B, classes]
        return self.head(self.encoder(self.tok(tokens) + self.pos).mean(1))


def ce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, targets, reduction="none")


def make_cases(n: int) -> list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    mlp = nn.Sequential(nn.Linear(128, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 10))
    x_mlp, y_mlp = torch.randn(n, 128, generator=g), torch.randint(0, 10, (n,), generator=g)
    cfg = TinyTransformerConfig()
    tiny = TinyTransformer(cfg)
    x_tok = torch.randint(0, cfg.vocab, (n, cfg.seq_len), generator=g)
    y_tok = torch.randint(0, cfg.n_classes, (n,), generator=g)
    return [("mlp 128-256-256-10", mlp.eval(), x_mlp, y_mlp),
            ("transformer 2x64, T=16", tiny.eval(), x_tok, y_tok)]


def time_vmap(model, x, y) -> tuple[float, float, np.ndarray]:
    """(total ms/example, gradient ms/example, sketches)."""
    gradient_sketches(model, x[:BATCH], y[:BATCH], ce, dim=DIM, batch_size=BATCH)  # warm-up
    t0 = time.perf_counter()
    sketches = gradient_sketches(model, x, y, ce, dim=DIM, batch_size=BATCH)
    total = (time.perf_counter() - t0) / len(x) * 1e3
    t0 = time.perf_counter()
    for lo in range(0, len(x), BATCH):
        per_sample_gradients(model, x[lo : lo + BATCH], y[lo : lo + BATCH], ce)
    grads = (time.perf_counter() - t0) / len(x) * 1e3
    return total, grads, sketches


def time_loop(model, x, y, r: torch.Tensor) -> tuple[float, float, np.ndarray]:
    """(total ms/example, forward+backward ms/example, sketches) of the per-example loop."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = np.empty((len(x), DIM), dtype=np.float32)
    backward = 0.0
    t0 = time.perf_counter()
    for i in range(len(x)):
        t1 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        ce(model(x[i : i + 1]), y[i : i + 1]).sum().backward()
        backward += time.perf_counter() - t1
        flat = torch.cat([p.grad.reshape(-1) for p in params])  # [P]
        out[i] = (flat @ r).numpy()  # [dim]
    total = (time.perf_counter() - t0) / len(x) * 1e3
    model.zero_grad(set_to_none=True)
    return total, backward / len(x) * 1e3, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k examples, loop on 100")
    args = parser.parse_args()
    n, n_loop = (2000, 100) if args.quick else (10_000, 500)
    default_threads = torch.get_num_threads()
    cases = make_cases(n)
    print(f"{n} examples per model, sketch dim {DIM}, vmap batches of {BATCH}; the loop is timed on "
          f"the first {n_loop} examples and extrapolated per example.")
    print(f"{'model':<24} {'P':>7} {'thr':>3} {'vmap ms':>8} {'grads':>7} {'loop ms':>8} {'backward':>9} "
          f"{'loop/vmap':>10} {'loop*/vmap':>11} {'grads only':>11} {'rel.diff':>9}")
    for name, model, x, y in cases:
        names = [k for k, p in model.named_parameters() if p.requires_grad]
        r_parts = projection_matrix(model, dim=DIM, seed=0)
        r = torch.cat([r_parts[k] for k in names])  # [P, dim], same order as the loop's flattening
        del r_parts
        for threads in dict.fromkeys([1, default_threads]):
            torch.set_num_threads(threads)
            v_total, v_grads, sketches = time_vmap(model, x, y)
            l_total, l_back, loop = time_loop(model, x[:n_loop], y[:n_loop], r)
            batched = l_back + (v_total - v_grads)  # loop gradients, vmap-path projection
            rel = float(np.abs(sketches[:n_loop] - loop).max() / np.abs(loop).max())
            print(f"{name:<24} {r.shape[0]:>7} {threads:>3} {v_total:>8.3f} {v_grads:>7.3f} {l_total:>8.3f} "
                  f"{l_back:>9.3f} {l_total / v_total:>9.1f}x {batched / v_total:>10.1f}x "
                  f"{l_back / v_grads:>10.1f}x {rel:>9.1e}",
                  flush=True)
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
