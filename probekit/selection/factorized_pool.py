"""The factorized sketch of a whole pool, batch by batch, and its matrix made whole (for tests).

``sketch_pool`` runs ``FactorizedSketcher`` (``probekit.selection.factorized_sketch``) over the
pool: the first batch's check fixes which parameters the hooks and stand-ins take, the rest go
through the vmap path with ``method="projection"``'s matrix. A later batch in which a layer the
check saw whole does not fit (data-dependent routing) starts the pool again with that layer
dense, so every example is sketched by one map.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from probekit.selection.factorized_sketch import FactorizedSketcher, PlanChanged

__all__ = ["factorized_projection_matrix", "sketch_pool"]

log = logging.getLogger("probekit.selection.factorized_sketch")


def factorized_projection_matrix(model: torch.nn.Module, *, dim: int = 256, seed: int = 0, factor_dim: int = 32,
                                 params: Sequence[str] | None = None, batch: tuple | None = None
                                 ) -> dict[str, torch.Tensor]:
    """The matrix ``method="factorized"`` projects by, whole: name -> [numel, dim], rows in the order of
    ``param.reshape(-1)``; the dense path's blocks (``projection_matrix``) for parameters no handled
    layer holds. ``batch=(inputs, targets, loss_fn)``: first run the first batch's check on it, so that
    the parameters it sends to the dense path get their dense blocks, as ``gradient_sketches`` does.
    ``numel x dim`` floats per parameter: for tests and small models."""
    from probekit.selection.grad_sketch import projection_matrix

    s = FactorizedSketcher(model, dim=dim, seed=seed, factor_dim=factor_dim, params=params,
                           owner="factorized_projection_matrix")
    if batch is not None:
        inputs, targets, loss_fn = batch
        s.prepare(inputs if isinstance(inputs, tuple) else (inputs,), targets, loss_fn)
    out: dict[str, torch.Tensor] = {}
    for name, p in s.chosen:
        if name in s.plan.matrices:
            m = s.plan.matrices[name]
            a = torch.eye(p.shape[0], device=p.device) if m.a is None else m.unsigned("rows")
            b = torch.eye(p.shape[1], device=p.device) if m.b is None else m.unsigned("cols")
            out[name] = torch.einsum("ia,jb,abd->ijd", a, b, m.c.reshape(m.kr, m.kc, dim)).reshape(-1, dim)
        elif name in s.plan.vectors:
            out[name] = s.plan.vectors[name].c
    if s.dense or s.standins:  # both sketched by the dense path's matrix
        out.update(projection_matrix(model, dim=dim, seed=seed, params=s.dense + s.standins))
    return {k: out[k] for k, _ in s.chosen}


def sketch_pool(model, args, targets, loss_fn, fixed, out, *, dim, seed, batch_size, params, factor_dim) -> np.ndarray:
    """Fill ``out`` [N, dim] with the factorized sketch of every handled layer, plus the dense path (vmap
    per-sample gradients, ``method="projection"``'s matrix) for the parameters neither the hooks nor a stand-in
    see whole, as the first batch's check decides. ``fixed``: the model's detached state, for the vmap."""
    owner = "gradient_sketches"
    sketcher = FactorizedSketcher(model, dim=dim, seed=seed, factor_dim=factor_dim, params=params, owner=owner)
    while True:
        try:
            return _sketch_batches(sketcher, model, args, targets, loss_fn, fixed, out, dim, seed, batch_size)
        except PlanChanged as changed:  # started again with those layers dense: one map for every example
            log.info("factorized sketch: %s did not fit a later batch; starting again with them dense", changed)
            sketcher.drop(changed.names)
            sketcher.report_dense()


def _sketch_batches(sketcher, model, args, targets, loss_fn, fixed, out, dim, seed, batch_size) -> np.ndarray:
    from probekit.selection.grad_sketch import (_attention_backend, _batches, _per_sample_fn, _Projector,
                                                 _vmap_error)

    dense = None  # (projector, per-sample fn, theta) once the first batch has fixed which parameters it takes
    for lo in _batches(len(out), batch_size, "factorized gradient sketches"):
        hi = min(lo + batch_size, len(out))
        xb, yb = tuple(x[lo:hi] for x in args), targets[lo:hi]
        if not sketcher.checked:
            sketcher.prepare(xb, yb, loss_fn)
        hooked = sketcher.plan.hooks or sketcher.plan.attention or sketcher.standins
        parts = sketcher.sketch(xb, yb, loss_fn) if hooked else {}  # all dense: no hooked pass to run
        s = sum(parts.values()) if parts else torch.zeros(hi - lo, dim)
        if sketcher.dense:
            if dense is None:
                chosen = [(k, fixed[k]) for k in sketcher.dense]
                dense = (_Projector(chosen, dim, seed), _per_sample_fn(model, loss_fn, fixed),
                         {k: fixed[k] for k in sketcher.dense})
            try:
                with _attention_backend(model):
                    grads = dense[1](dense[2], xb, yb)
            except RuntimeError as exc:
                raise _vmap_error(sketcher.owner, model, exc) from exc
            with torch.no_grad():
                s = s + dense[0](grads).to(s.device, s.dtype)
            del grads
        out[lo:hi] = s.detach().to("cpu", torch.float32).numpy()
    return out
