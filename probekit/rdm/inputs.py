"""What the streaming and the offline 2RDM check on the way in: their shared parameters, and losses as float64."""
from __future__ import annotations

from typing import Any

import numpy as np

from probekit.errors import ProbekitUsageError
from probekit.params import Interval, Options, validate
from probekit.rdm.spectral import DETREND_MODES, MIN_WINDOW

__all__ = ["as_float64_array", "as_loss_vector", "check_rdm_params"]


def check_rdm_params(owner: str, window: Any, stride: Any, detrend: Any, top_k: Any) -> None:
    """Validate the parameters shared by the streaming and the offline 2RDM."""
    validate(
        owner,
        {"window": window, "stride": stride, "detrend": detrend, "top_k": top_k},
        {
            "window": Interval(int, 2, None),
            "stride": Interval(int, 1, None),
            "detrend": Options(*DETREND_MODES),
            "top_k": Interval(int, 0, None),
        },
    )
    if window < MIN_WINDOW[detrend]:
        raise ProbekitUsageError(
            f"The 'window' parameter of {owner} must be at least {MIN_WINDOW[detrend]} "
            f"with detrend={detrend!r}. Got {window!r} instead."
        )


def as_float64_array(losses: Any, owner: str, shape: str) -> np.ndarray:
    """numpy, torch (without importing it) or nested lists -> a float64 array."""
    if hasattr(losses, "detach"):  # a torch tensor
        losses = losses.detach().to("cpu").double().numpy()
    try:
        return np.asarray(losses, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ProbekitUsageError(
            f"{owner} takes {shape} of per-sample losses; got a value numpy cannot "
            f"read as numbers ({type(losses).__name__})."
        ) from exc


def as_loss_vector(losses: Any, owner: str = "DynamicalRDM.update") -> np.ndarray:
    """One record of per-sample losses (numpy, torch, list) as a float64 vector."""
    x = as_float64_array(losses, owner, "a 1-D array")
    if x.ndim != 1 or x.size == 0:
        raise ProbekitUsageError(
            f"{owner} takes one record at a time: a non-empty 1-D array of n per-sample "
            f"losses. Got an array of shape {x.shape}."
        )
    return x
