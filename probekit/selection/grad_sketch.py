"""Per-sample gradient sketches: one [dim] vector per example, memory linear in the pool.

A sketch is a random projection of the gradient of one example's loss at one
checkpoint, s_i = R^T vec(grad_theta loss_i). Inner products and distances
between gradients survive the projection in expectation (Johnson-Lindenstrauss),
so geometric selectors (k-center, k-means++) can run on [N, dim] sketches
instead of [N, P] gradients.

Three methods (``factorized``, for models of millions of parameters, has its own module,
``probekit.selection.factorized_sketch``: every layer's gradient projected from the layer's inputs and
output gradients, at about the cost of one backward pass, never formed):

``projection`` (all of the chosen parameters). A batch of per-sample gradients
    comes from one ``torch.func.vmap(torch.func.grad(...))`` over
    ``functional_call`` and is multiplied by R, a dense Gaussian matrix with
    N(0, 1/dim) entries. R is drawn per parameter tensor, in chunks of
    ``_ROWS_PER_CHUNK`` rows, each chunk by a CPU ``torch.Generator`` seeded
    from ``SeedSequence((seed, crc32(name), chunk))``: R depends only on
    (seed, parameter name, shape, dim), never on ``batch_size``, on which
    parameters are chosen, on the device, or on whether it is cached.
    :func:`projection_matrix` materialises it (for tests and small models).

``badge`` (one ``nn.Linear``, by default the last one in ``model.modules()``
    order: the classification head). For a linear layer z = W h + b the
    gradient of the loss with respect to [W | b] is the outer product
    g (x) [h, 1], with g = dloss/dz (softmax - onehot for cross-entropy; Ash et
    al., BADGE, 2020). It is never formed: the sketch uses a Khatri-Rao
    projection, column d of R being a_d (x) b_d with a_d, b_d ~ N(0, I), so
    s_d = (a_d . g)(b_d . [h, 1]) / sqrt(dim), which costs O((C + H) dim) per
    example. When the layer sees a sequence ([B, T, H] -> [B, T, C]), the weight
    gradient is a sum of T outer products and so is the sketch. g comes from
    one ``autograd.grad`` of the summed per-sample losses with respect to the
    layer's output (a leaf swapped in by a forward hook), h from the same hook:
    no vmap needed. :func:`badge_projection_matrix` materialises the matrix.

Memory. Per batch: the per-sample gradients, batch_size x P floats
(``projection``) or batch_size x (C + H) (``badge``); the output N x dim; and
R: kept whole while P x dim x itemsize <= ``_CACHE_BYTES`` (128 MiB), else
re-drawn chunk by chunk for every batch (``_ROWS_PER_CHUNK`` x dim at a time;
slower, same numbers). The [N, P] matrix of every gradient never exists.

The model is never written: parameters are passed detached and buffers cloned
to ``functional_call``, nothing accumulates in ``.grad``, and the train/eval
mode is left as the caller set it. ``model.eval()`` is the recommended state
(and needed for dropout, whose noise vmap refuses with ``randomness="error"``,
and for batch norm, whose batch statistics would couple the examples).
On the CPU, per-sample gradients run with scaled_dot_product_attention's math
backend: its fused CPU kernel has no vmap batching rule, and torch would loop
over the examples one by one instead.
"""
from __future__ import annotations

import contextlib
import logging
import math
import zlib
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from probekit.errors import ProbekitUsageError
from probekit.params import AnyOf, Interval, Options, validate
from probekit.torch_params import check_per_sample_losses, choose_parameters

__all__ = ["badge_projection_matrix", "gradient_sketches", "per_sample_gradients", "projection_matrix"]

_ROWS_PER_CHUNK = 8192  # rows of R drawn per generator call; fixed, so R never depends on caching
_CACHE_BYTES = 128 * 2**20  # keep R resident up to this size, else re-draw per batch
_PARAMS = {
    "model": torch.nn.Module,
    "dim": Interval(int, 1, None),
    "seed": Interval(int, 0, None),  # SeedSequence takes non-negative entropy
    "batch_size": Interval(int, 1, None),
    "method": Options("projection", "badge", "factorized"),
    "layer": AnyOf(None, str),
    "factor_dim": Interval(int, 1, None),
}


# -- the random matrices -------------------------------------------------------------
def _stream_seed(seed: int, name: str, chunk: int) -> int:
    # crc32 of the name: the rows for a tensor do not depend on which others are chosen.
    key = zlib.crc32(name.encode("utf-8"))
    return int(np.random.SeedSequence([seed, key, chunk]).generate_state(1, np.uint64)[0])


def _gaussian_chunk(seed: int, name: str, chunk: int, rows: int, dim: int, dtype, device) -> torch.Tensor:
    """Rows [chunk * K, chunk * K + rows) of R for one tensor: [rows, dim], N(0, 1/dim)."""
    gen = torch.Generator(device="cpu").manual_seed(_stream_seed(seed, name, chunk))
    draw_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    r = torch.randn(rows, dim, generator=gen, dtype=draw_dtype) / math.sqrt(dim)
    return r.to(device=device, dtype=dtype)


def _chunks(numel: int):
    for c, lo in enumerate(range(0, numel, _ROWS_PER_CHUNK)):
        yield c, lo, min(lo + _ROWS_PER_CHUNK, numel)


class _Projector:
    """[B, *shape] per-sample gradients (name -> tensor) -> [B, dim] sketches."""

    def __init__(self, chosen: list[tuple[str, torch.Tensor]], dim: int, seed: int) -> None:
        self.shapes = [(name, p.numel(), p.dtype, p.device) for name, p in chosen]
        self.dim, self.seed = dim, seed
        total = sum(p.numel() * p.element_size() for _, p in chosen) * dim
        self.cache: dict[tuple[str, int], torch.Tensor] | None = {} if total <= _CACHE_BYTES else None
        self.max_chunk_rows = 0  # largest block of R held at once (memory tests read it)

    def _block(self, name: str, c: int, lo: int, hi: int, dtype, device) -> torch.Tensor:
        if self.cache is not None and (name, c) in self.cache:
            return self.cache[(name, c)]
        block = _gaussian_chunk(self.seed, name, c, hi - lo, self.dim, dtype, device)
        self.max_chunk_rows = max(self.max_chunk_rows, hi - lo)
        if self.cache is not None:
            self.cache[(name, c)] = block
        return block

    def __call__(self, grads: dict[str, torch.Tensor]) -> torch.Tensor:
        b = next(iter(grads.values())).shape[0]
        _, _, dtype, device = self.shapes[0]
        out = torch.zeros(b, self.dim, dtype=dtype, device=device)  # [B, dim]
        for name, numel, _, _ in self.shapes:
            g = grads[name].reshape(b, numel).to(dtype)  # [B, numel]
            for c, lo, hi in _chunks(numel):
                out.addmm_(g[:, lo:hi], self._block(name, c, lo, hi, dtype, device))
        return out


def projection_matrix(model: Any, *, dim: int = 256, seed: int = 0,
                      params: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """The matrix ``method="projection"`` uses, whole: name -> [numel, dim].

    ``gradient_sketches(...)[i] == sum over names of vec(grad_i[name]) @ R[name]``.
    It is P x dim floats: for tests and small models only.
    """
    validate("projection_matrix", {"model": model, "dim": dim, "seed": seed},
             {k: _PARAMS[k] for k in ("model", "dim", "seed")})
    out = {}
    for name, p in choose_parameters("projection_matrix", model, params):
        blocks = [_gaussian_chunk(seed, name, c, hi - lo, dim, p.dtype, p.device)
                  for c, lo, hi in _chunks(p.numel())]
        out[name] = torch.cat(blocks)
    return out


def _badge_factors(seed: int, layer: str, c: int, h: int, dim: int, dtype, device):
    """A [C, dim] and B [H(+1), dim], both N(0, 1): the Khatri-Rao factors of the BADGE sketch."""
    a = _gaussian_chunk(seed, f"badge:{layer}:out", 0, c, dim, dtype, device) * math.sqrt(dim)
    b = _gaussian_chunk(seed, f"badge:{layer}:in", 0, h, dim, dtype, device) * math.sqrt(dim)
    return a, b


def badge_projection_matrix(model: Any, *, dim: int = 256, seed: int = 0,
                            layer: str | None = None) -> torch.Tensor:
    """The BADGE sketch as an explicit matrix: [C * (H + bias), dim], rows in the order of
    ``torch.cat([W, b[:, None]], 1).reshape(-1)`` (or ``W.reshape(-1)`` without a bias).

    ``gradient_sketches(..., method="badge")[i] == vec([dW_i | db_i]) @ M``. For tests.
    """
    validate("badge_projection_matrix", {"model": model, "dim": dim, "seed": seed, "layer": layer},
             {k: _PARAMS[k] for k in ("model", "dim", "seed", "layer")})
    name, lin = _badge_layer("badge_projection_matrix", model, layer)
    w = lin.weight
    a, b = _badge_factors(seed, name, w.shape[0], w.shape[1] + (lin.bias is not None), dim,
                          w.dtype, w.device)
    return (a[:, None, :] * b[None, :, :]).reshape(-1, dim) / math.sqrt(dim)


# -- inputs and checks -----------------------------------------------------------------
def _badge_layer(owner: str, model: torch.nn.Module, layer: str | None) -> tuple[str, torch.nn.Linear]:
    linears = [(k, m) for k, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if layer is None:
        if not linears:
            raise ProbekitUsageError(
                f"{owner} with method='badge' needs an nn.Linear layer (the head); "
                f"the model {type(model).__name__} has none."
            )
        return linears[-1]
    found = dict(linears)
    if layer not in found:
        raise ProbekitUsageError(
            f"The 'layer' parameter of {owner} must name an nn.Linear module of the model. "
            f"Got {layer!r} instead; linear layers: {', '.join(found) or 'none'}."
        )
    return layer, found[layer]


def _as_args(owner: str, inputs: Any) -> tuple[torch.Tensor, ...]:
    args = (inputs,) if isinstance(inputs, torch.Tensor) else inputs
    ok = isinstance(args, (tuple, list)) and len(args) > 0 and all(isinstance(a, torch.Tensor) for a in args)
    if not ok or args[0].ndim == 0 or args[0].shape[0] == 0 or any(
            a.ndim == 0 or a.shape[0] != args[0].shape[0] for a in args):
        got = "shapes " + ", ".join(str(tuple(a.shape)) for a in args) if ok else type(inputs).__name__
        raise ProbekitUsageError(
            f"The 'inputs' parameter of {owner} must be a tensor or a tuple of tensors sharing a "
            f"first dimension, the examples (at least one). Got {got} instead."
        )
    return tuple(args)


def _check_targets(owner: str, targets: Any, n: int) -> None:
    if not isinstance(targets, torch.Tensor) or targets.ndim == 0 or targets.shape[0] != n:
        got = f"shape {tuple(targets.shape)}" if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ProbekitUsageError(
            f"The 'targets' parameter of {owner} must be a tensor with one row per example ({n}). "
            f"Got {got} instead."
        )


def _check_loss_fn(owner: str, loss_fn: Any) -> None:
    if not callable(loss_fn):
        raise ProbekitUsageError(
            f"The 'loss_fn' parameter of {owner} must be a callable (outputs, targets) -> "
            f"per-sample losses. Got {loss_fn!r} instead."
        )


def _vmap_error(owner: str, model: torch.nn.Module, exc: RuntimeError) -> ProbekitUsageError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    hint = ("the model is in train mode: call model.eval() first (dropout and batch-norm "
            "statistics cannot be batched over examples)" if model.training else
            "the model must be vmap-compatible (no .item() or data-dependent control flow in forward)")
    return ProbekitUsageError(f"{owner} could not compute per-sample gradients under torch.func.vmap "
                              f"({first}); {hint}.")


# -- per-sample gradients ---------------------------------------------------------------
def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = {k: p.detach() for k, p in model.named_parameters()}
    state.update({k: b.clone() for k, b in model.named_buffers()})  # clones: the model is never written
    return state


def _attention_backend(model: torch.nn.Module):
    """On the CPU, scaled_dot_product_attention's fused kernel has no vmap batching rule (torch
    falls back to a slow per-example loop, with a warning); its math form batches."""
    first = next(iter(model.parameters()), None)
    if first is None or first.device.type != "cpu":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def _per_sample_fn(model, loss_fn, fixed):
    """vmap(grad(loss of one example)) over the batch: (theta, args, targets) -> name -> [B, *shape]."""
    def one(theta, args, target):
        out = functional_call(model, {**fixed, **theta}, tuple(a.unsqueeze(0) for a in args))
        return loss_fn(out, target.unsqueeze(0)).sum()

    return vmap(grad(one), in_dims=(None, 0, 0), randomness="error")


def per_sample_gradients(model: Any, inputs: Any, targets: Any, loss_fn: Callable, *,
                         params: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Gradients of each example's loss, unprojected: name -> [B, *shape] (one batch, all at once).

    The building block of ``gradient_sketches(method="projection")``, exposed for
    checks against a per-example ``loss.backward()`` loop. B x P floats: batch it.
    """
    owner = "per_sample_gradients"
    validate(owner, {"model": model}, {"model": torch.nn.Module})
    _check_loss_fn(owner, loss_fn)
    args = _as_args(owner, inputs)
    _check_targets(owner, targets, args[0].shape[0])
    chosen = choose_parameters(owner, model, params)
    fixed = _state(model)
    theta = {k: fixed[k] for k, _ in chosen}
    try:
        with _attention_backend(model):
            return _per_sample_fn(model, loss_fn, fixed)(theta, args, targets)
    except RuntimeError as exc:
        raise _vmap_error(owner, model, exc) from exc


def _badge_batch(model, lin, loss_fn, fixed, args, targets, a, b, owner, check) -> torch.Tensor:
    """[B, dim] BADGE sketches of one batch, from g = dloss/dz and h (never their outer product)."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module, inputs, output):
        z = output.detach().requires_grad_(True)  # a leaf: autograd stops at the head
        seen.append((inputs[0].detach(), z))
        return z

    handle = lin.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            out = functional_call(model, fixed, args)
            losses = loss_fn(out, targets)
            if check:
                check_per_sample_losses(owner, losses, args[0].shape[0])
            if len(seen) != 1:
                raise ProbekitUsageError(
                    f"{owner} with method='badge' needs the layer to run once per forward pass; "
                    f"it ran {len(seen)} times."
                )
            h, z = seen[0]
            (g,) = torch.autograd.grad(losses.sum(), z, allow_unused=True)
    finally:
        handle.remove()
    n = args[0].shape[0]
    g = torch.zeros_like(z) if g is None else g
    g = g.reshape(n, -1, g.shape[-1])  # [B, T, C]; T = 1 for a plain classifier head
    h = h.reshape(n, -1, h.shape[-1])  # [B, T, H]
    if lin.bias is not None:
        h = torch.cat([h, torch.ones_like(h[..., :1])], dim=-1)  # [h, 1]: the bias column
    return ((g @ a) * (h @ b)).sum(1) / math.sqrt(a.shape[1])  # [B, dim]


def _batches(n: int, batch_size: int, desc: str):
    """Batch starts with a progress bar (shown only on a terminal, gone when done)."""
    from probekit.progress import Progress

    starts = range(0, n, batch_size)
    return Progress(len(starts), desc, unit="batch", logger=logging.getLogger(__name__), every=10.0).track(starts)


def gradient_sketches(
    model: Any,
    inputs: Any,
    targets: Any,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    *,
    dim: int = 256,
    seed: int = 0,
    batch_size: int = 256,
    method: str = "projection",
    params: Sequence[str] | None = None,
    layer: str | None = None,
    factor_dim: int = 32,
) -> np.ndarray:
    """[N, dim] float32 random projections of the per-sample loss gradients at the model's weights.

    ``inputs`` (a tensor, or a tuple passed positionally) and ``targets`` hold the
    N examples along dim 0, on the model's device; ``loss_fn(outputs, targets)``
    returns [B] unreduced losses. ``params`` names the tensors to differentiate
    (``projection``; default all with requires_grad), ``layer`` the nn.Linear to
    factorise (``badge``; default the last). ``batch_size`` bounds memory and does
    not change the result beyond float rounding. See the module doc for the bound.
    ``factorized`` (``probekit.selection.factorized_sketch``) projects each layer's gradient through
    [rows, ``factor_dim``] x [cols, ``factor_dim``] factors, never forming it.
    """
    owner = "gradient_sketches"
    validate(owner, dict(model=model, dim=dim, seed=seed, batch_size=batch_size, method=method,
                         layer=layer, factor_dim=factor_dim), _PARAMS)
    _check_loss_fn(owner, loss_fn)
    args = _as_args(owner, inputs)
    n = args[0].shape[0]
    _check_targets(owner, targets, n)
    if method == "badge" and params is not None:
        raise ProbekitUsageError(
            f"The 'params' parameter of {owner} applies to method='projection'; "
            "method='badge' sketches one linear layer, named with 'layer'."
        )
    if method != "badge" and layer is not None:
        raise ProbekitUsageError(
            f"The 'layer' parameter of {owner} applies to method='badge'; "
            f"method={method!r} takes 'params'."
        )
    fixed = _state(model)
    out = np.empty((n, dim), dtype=np.float32)
    if method == "badge":
        name, lin = _badge_layer(owner, model, layer)
        w = lin.weight
        a, b = _badge_factors(seed, name, w.shape[0], w.shape[1] + (lin.bias is not None), dim,
                              w.dtype, w.device)
        for lo in _batches(n, batch_size, "BADGE sketches"):
            hi = min(lo + batch_size, n)
            s = _badge_batch(model, lin, loss_fn, fixed, tuple(x[lo:hi] for x in args),
                             targets[lo:hi], a, b, owner, check=lo == 0)
            out[lo:hi] = s.detach().to("cpu", torch.float32).numpy()
        return out
    if method == "factorized":
        from probekit.selection.factorized_pool import sketch_pool

        return sketch_pool(model, args, targets, loss_fn, fixed, out, dim=dim, seed=seed, batch_size=batch_size,
                           params=params, factor_dim=factor_dim)
    chosen = choose_parameters(owner, model, params)
    theta = {k: fixed[k] for k, _ in chosen}
    project = _Projector(chosen, dim, seed)
    per_sample = _per_sample_fn(model, loss_fn, fixed)
    for lo in _batches(n, batch_size, "gradient sketches"):
        hi = min(lo + batch_size, n)
        xb, yb = tuple(x[lo:hi] for x in args), targets[lo:hi]
        if lo == 0:  # a plain forward first: a reduced loss fails here with a clear message
            with torch.no_grad():
                check_per_sample_losses(owner, loss_fn(functional_call(model, fixed, xb), yb), hi - lo)
        try:
            with _attention_backend(model):
                grads = per_sample(theta, xb, yb)  # name -> [B, *shape]
        except RuntimeError as exc:
            raise _vmap_error(owner, model, exc) from exc
        with torch.no_grad():
            out[lo:hi] = project(grads).to("cpu", torch.float32).numpy()
        del grads
    return out

