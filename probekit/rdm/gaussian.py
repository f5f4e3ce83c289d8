"""The Gaussian 2RDM: K parameter draws around one checkpoint instead of a time window.

Early in training no trajectory exists to take a window over (docs/design.md §1), so
the rows of the [K, n] loss matrix are draws theta_k = theta + sigma * eps_k,
eps_k ~ N(0, I) over the perturbed parameters. The 2RDM is then the covariance
of the n per-probe losses across draws. To first order L(theta_k) - L(theta) =
sigma * J eps_k (J: [n, P] per-probe gradients), so C ~ sigma^2 J J^T: probes pair
up when their loss gradients align, and SHC grows like sigma^4 for small sigma.

Draws. Draw k is made by a CPU ``torch.Generator`` seeded from
``SeedSequence((seed, k))``, drawing each perturbed tensor in model order. So a
draw depends only on (seed, k, the perturbed tensors): not on ``chunk_size``,
not on the device (the noise is made on the CPU and moved), and the same seed
gives the same matrix. ``gaussian_draws`` returns these offsets, so that an
independent evaluation (the tests, a user's own loop) can reuse the exact noise.

``relative=True`` scales sigma per tensor by its RMS, sigma * ||theta|| /
sqrt(numel): a layer with small weights gets small noise. A tensor that is all
zero (a fresh LayerNorm bias) then gets none; probekit warns.

Evaluation. All draws of a chunk are one ``torch.func.vmap`` over
``functional_call`` under ``torch.no_grad()``; unperturbed parameters and the
buffers are shared, unbatched. The model's own tensors are never written (the
buffers passed are clones: a train-mode BatchNorm updates its running stats in
place). The train/eval mode is left as the caller set it, and ``model.eval()``
is the documented path: vmap runs with ``randomness="error"`` because dropout
noise would add a second source of fluctuation to the one being measured, and
train-mode BatchNorm's batch statistics cannot be batched over draws. Such a
model raises a ProbekitUsageError that says to call ``model.eval()``.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.func import functional_call, vmap

from probekit.errors import ProbekitUsageError, ProbekitWarning
from probekit.params import AnyOf, Interval, validate
from probekit.rdm.offline import window_stats
from probekit.torch_params import check_per_sample_losses, choose_parameters

__all__ = ["gaussian_draws", "gaussian_loss_matrix", "gaussian_rdm"]

_DRAW_PARAMS = {
    "model": torch.nn.Module,
    "sigma": Interval(float, 0, None, closed="neither"),
    "n_draws": Interval(int, 2, None),  # a covariance needs two rows
    "seed": Interval(int, 0, None),  # SeedSequence takes non-negative entropy
    "relative": bool,
}
_EVAL_PARAMS = {"chunk_size": AnyOf(None, Interval(int, 1, None)), "include_center": bool}


def _scales(chosen: list[tuple[str, torch.Tensor]], sigma: float, relative: bool,
            stacklevel: int) -> list[float]:
    """Noise scale per perturbed tensor: sigma, or sigma times the tensor's RMS."""
    if not relative:
        return [float(sigma)] * len(chosen)
    rms = [float(p.detach().double().norm()) / math.sqrt(max(p.numel(), 1)) for _, p in chosen]
    zero = [name for (name, _), r in zip(chosen, rms) if r == 0.0]
    if zero:  # stacklevel: point at the caller of the public function
        warnings.warn(f"relative=True leaves all-zero tensors unperturbed: {', '.join(zero)}.",
                      ProbekitWarning, stacklevel=stacklevel)
    return [float(sigma) * r for r in rms]


def _draw_seed(seed: int, k: int) -> int:
    # SeedSequence mixes (seed, k) so that seed s draw k+1 and seed s+1 draw k differ.
    return int(np.random.SeedSequence([seed, k]).generate_state(1, np.uint64)[0])


def _offsets(chosen: list[tuple[str, torch.Tensor]], scales: list[float], seed: int,
             lo: int, hi: int) -> dict[str, torch.Tensor]:
    """sigma_p * eps for draws lo..hi-1: name -> [hi - lo, *shape], parameter device/dtype."""
    gen = torch.Generator(device="cpu")
    eps: dict[str, list[torch.Tensor]] = {name: [] for name, _ in chosen}
    for k in range(lo, hi):
        gen.manual_seed(_draw_seed(seed, k))
        for name, p in chosen:
            # float64 noise for float64 models; float32 (then cast) for every other dtype.
            dtype = torch.float64 if p.dtype == torch.float64 else torch.float32
            eps[name].append(torch.randn(p.shape, generator=gen, dtype=dtype))
    return {
        name: torch.stack(eps[name]).to(device=p.device, dtype=p.dtype) * s
        for (name, p), s in zip(chosen, scales)
    }


def gaussian_draws(
    model: Any,
    *,
    sigma: float = 1e-3,
    n_draws: int = 32,
    seed: int = 0,
    params: Sequence[str] | None = None,
    relative: bool = False,
) -> dict[str, torch.Tensor]:
    """The offsets theta_k - theta that ``gaussian_loss_matrix`` uses with the same arguments.

    Returns name -> [n_draws, *shape] on the parameter's device and dtype; draw k
    of the matrix evaluates the model at ``theta + offsets[name][k]``.
    """
    owner = "gaussian_draws"
    validate(owner, dict(model=model, sigma=sigma, n_draws=n_draws, seed=seed, relative=relative),
             _DRAW_PARAMS)
    chosen = choose_parameters(owner, model, params)
    return _offsets(chosen, _scales(chosen, sigma, relative, 3), seed, 0, n_draws)


def _as_args(owner: str, inputs: Any) -> tuple[torch.Tensor, ...]:
    args = (inputs,) if isinstance(inputs, torch.Tensor) else inputs
    ok = isinstance(args, (tuple, list)) and len(args) > 0
    ok = ok and all(isinstance(a, torch.Tensor) for a in args)
    if not ok or args[0].ndim == 0 or args[0].shape[0] == 0:
        got = f"shape {tuple(args[0].shape)}" if ok else type(inputs).__name__
        raise ProbekitUsageError(
            f"The 'inputs' parameter of {owner} must be a tensor or a tuple of tensors whose "
            f"first dimension is the probe batch (at least one probe). Got {got} instead."
        )
    return tuple(args)


def _evaluate(owner, model, inputs, targets, loss_fn, sigma, n_draws, seed, chunk_size,
              params, relative, include_center) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(center losses [n], draw losses [K, n], perturbed names), all float64 on the CPU."""
    validate(owner, dict(model=model, sigma=sigma, n_draws=n_draws, seed=seed, relative=relative,
                         chunk_size=chunk_size, include_center=include_center),
             {**_DRAW_PARAMS, **_EVAL_PARAMS})
    if not callable(loss_fn):
        raise ProbekitUsageError(
            f"The 'loss_fn' parameter of {owner} must be a callable (outputs, targets) -> "
            f"per-sample losses. Got {loss_fn!r} instead."
        )
    args = _as_args(owner, inputs)
    n = args[0].shape[0]
    chosen = choose_parameters(owner, model, params)
    scales = _scales(chosen, sigma, relative, 4)
    fixed = {k: p.detach() for k, p in model.named_parameters()}
    fixed.update({k: b.clone() for k, b in model.named_buffers()})  # clones: see module doc
    theta = {name: p.detach() for name, p in chosen}

    def losses(state: dict[str, torch.Tensor]) -> torch.Tensor:
        return loss_fn(functional_call(model, state, args), targets)

    with torch.no_grad():
        # The unperturbed pass, outside vmap, checks loss_fn with a plain error trace.
        center = losses(fixed)
        check_per_sample_losses(owner, center, n)
        # One draw: perturbed name -> [*shape]; batched over draws by vmap.
        batched = vmap(lambda perturbed: losses({**fixed, **perturbed}), randomness="error")
        step = chunk_size or n_draws
        rows = []
        for lo in range(0, n_draws, step):
            delta = _offsets(chosen, scales, seed, lo, min(lo + step, n_draws))
            perturbed = {name: theta[name] + delta[name] for name in theta}  # [c, *shape]
            try:
                out = batched(perturbed)  # [c, n]
            except RuntimeError as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                hint = (
                    "the model is in train mode: call model.eval() first (dropout and "
                    "batch-norm statistics cannot be batched over draws)"
                    if model.training
                    else "the model must be vmap-compatible (no .item() or data-dependent "
                    "control flow in forward)"
                )
                raise ProbekitUsageError(
                    f"{owner} could not evaluate the draws under torch.func.vmap ({first}); "
                    f"{hint}."
                ) from exc
            rows.append(out.detach().to("cpu", torch.float64))
    matrix = torch.cat(rows).numpy()  # [K, n]
    return center.detach().to("cpu", torch.float64).numpy(), matrix, [k for k, _ in chosen]


def gaussian_loss_matrix(
    model: Any,
    inputs: Any,
    targets: Any,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    *,
    sigma: float = 1e-3,
    n_draws: int = 32,
    seed: int = 0,
    chunk_size: int | None = None,
    params: Sequence[str] | None = None,
    relative: bool = False,
    include_center: bool = False,
) -> np.ndarray:
    """Per-probe losses at K = n_draws parameter draws around the model's weights.

    ``inputs`` (a tensor, or a tuple passed positionally) holds the n probes along
    dim 0; ``loss_fn(outputs, targets)`` must return [n] unreduced losses.
    ``chunk_size`` draws are evaluated at once (default: all; lower it to bound
    memory, the result does not change). ``params`` names the tensors to perturb
    (default: all with requires_grad). Returns [K, n] float64, or [K + 1, n]
    with the unperturbed losses as row 0 when ``include_center``.
    """
    center, matrix, _ = _evaluate("gaussian_loss_matrix", model, inputs, targets, loss_fn, sigma,
                                  n_draws, seed, chunk_size, params, relative, include_center)
    return np.concatenate([center[None], matrix]) if include_center else matrix


def gaussian_rdm(
    model: Any,
    inputs: Any,
    targets: Any,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    *,
    sigma: float = 1e-3,
    n_draws: int = 32,
    seed: int = 0,
    chunk_size: int | None = None,
    params: Sequence[str] | None = None,
    relative: bool = False,
    top_k: int = 3,
    loadings: bool = True,
) -> Any:
    """2RDM statistics (``RDMStats``) of the Gaussian loss matrix, draws as one window.

    Arguments are those of :func:`gaussian_loss_matrix`; draws have no order, so
    no detrending applies. ``extras`` holds mean_loss (over draws and probes),
    center_loss (unperturbed mean; their gap ~ sigma^2 tr(H) / 2 per probe),
    sigma, n_draws, seed, relative and params (the perturbed names).
    """
    owner = "gaussian_rdm"
    validate(owner, {"top_k": top_k, "loadings": loadings},
             {"top_k": Interval(int, 0, None), "loadings": bool})
    center, matrix, names = _evaluate(owner, model, inputs, targets, loss_fn, sigma, n_draws,
                                      seed, chunk_size, params, relative, False)
    bad = int((~np.isfinite(matrix)).sum())
    if bad:
        raise ProbekitUsageError(
            f"{owner} got {bad} NaN or inf losses over {n_draws} draws; "
            f"lower sigma (now {sigma!r}) or check loss_fn."
        )
    stats = window_stats(matrix, detrend="none", top_k=top_k, loadings=loadings)
    extras = dict(mean_loss=float(matrix.mean()), center_loss=float(center.mean()),
                  sigma=float(sigma), n_draws=n_draws, seed=seed, relative=relative,
                  params=tuple(names))
    return dataclasses.replace(stats, extras=extras)
