"""Torch pieces shared by the Gaussian 2RDM and the gradient sketches.

Which of a model's parameters an operation touches (to perturb, to
differentiate), and the check that a loss function returns one loss per
example: the same arguments, the same errors, in one place.
"""
from __future__ import annotations

from typing import Any

import torch

from probekit.errors import ProbekitUsageError

MAX_LISTED = 20  # names shown when an unknown parameter name is given


def choose_parameters(owner: str, model: torch.nn.Module, params: Any) -> list[tuple[str, torch.Tensor]]:
    """(name, parameter) pairs in model order: every trainable one, or those ``params`` names.

    Model order, not list order: results (noise draws, projections) must not
    depend on how the names happen to be listed.
    """
    named = dict(model.named_parameters())
    if params is None:
        chosen = [(k, p) for k, p in named.items() if p.requires_grad]
        if not chosen:
            raise ProbekitUsageError(
                f"{owner} found no parameters with requires_grad in the model; name them with 'params'."
            )
        return chosen
    if isinstance(params, str) or not isinstance(params, (list, tuple)) or not all(isinstance(x, str) for x in params):
        raise ProbekitUsageError(
            f"The 'params' parameter of {owner} must be None or a list of parameter names. Got {params!r} instead."
        )
    if not params:
        raise ProbekitUsageError(
            f"The 'params' parameter of {owner} must name at least one parameter "
            "(None takes every trainable one). Got an empty list instead."
        )
    unknown = [x for x in params if x not in named]
    if unknown:
        shown = ", ".join(list(named)[:MAX_LISTED])
        more = f", ... ({len(named)} in all)" if len(named) > MAX_LISTED else ""
        raise ProbekitUsageError(
            f"{owner} got unknown parameter name(s) {', '.join(map(repr, unknown))}. Available: {shown}{more}."
        )
    wanted = set(params)
    return [(k, p) for k, p in named.items() if k in wanted]


def check_per_sample_losses(owner: str, out: Any, n: int) -> None:
    """``loss_fn`` must return [n] unreduced losses; say what it returned otherwise."""
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n,):
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise ProbekitUsageError(
            f"{owner}: loss_fn must return a tensor of per-sample losses of shape ({n},), one per "
            f"example (not reduced: use reduction='none'); it returned {got}."
        )


def torch_device(value: Any, what: str) -> torch.device:
    """``value`` as a torch device that exists here; ``what`` names the option in the one-line errors
    (``--device``, ``The 'device' parameter of X``). A bare ``cuda`` is accepted wherever one GPU is."""
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError, TypeError):
        raise ProbekitUsageError(f"{what} must be a torch device such as 'cpu' or 'cuda:0'. Got {value!r} "
                                 "instead.") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise ProbekitUsageError(f"{what} names {value!r}, but torch sees {seen} CUDA device(s) here; give 'cpu' "
                                 "or a device that exists.")
    return device
