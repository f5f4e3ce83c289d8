"""Signals an alarm rule can watch: 2RDM statistics of a probe set, and scalar baselines.

Every signal is one value per (strided) record, NaN where it is not defined
yet, and **rises** towards a transition, so that one family of alarm rules
(which fire on rises) serves all of them:

2RDM statistics of the probe set's window (``probekit.rdm_series``): every
signal of the signal table (:mod:`probekit.rdm.signal_table`, where each is declared
once and computed; registry ``probekit.registry.SIGNALS``), the same signals
``probekit analyze --signal`` and the Monitor accept. A name is either a 2RDM
signal or one of the signals below, never both (:func:`probe_signals`).

Scalar baselines (the classical early-warning indicators, on the same records):

- ``mean_drop``: running maximum of the mean probe loss over its current value
  (>= 1; rises as the mean loss drops);
- ``mean_var``: the rolling variance of the mean probe loss over the window;
- ``mean_ar1``: (1 + lag-1 autocorrelation of the mean probe loss over the
  window) / 2, in [0, 1] (critical slowing down);

(both from ``probekit.rdm.indicators``, whose conventions agree with ewstools)
- ``grad_norm``: the trajectory's stored gradient norm (the probe set plays no
  part).

Peer signals (``probekit.eval.peers``; ``pip install "probekit[peers]"``): ``llc``
and ``llc_dev``, devinterp's local learning coefficient on a run's kept
checkpoints. They come from an LLC series, not from probe losses:
``compute_signal`` refuses them.

Detrending, window and record stride are the :class:`SignalSpec`'s axes; the
log transform ("log-SHC") belongs to the alarm rule (``zscore`` with
``transform="log"``), not to the signal.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probekit.errors import ProbekitError, ProbekitUsageError
from probekit.rdm.signal_table import get_signal, signal_names
from probekit.rdm.spectral import DETREND_MODES

__all__ = ["PEER_SIGNALS", "SCALAR_SIGNALS", "SignalSpec", "compute_signal", "probe_signals"]

SCALAR_SIGNALS = ("mean_drop", "mean_var", "mean_ar1", "grad_norm")
PEER_SIGNALS = ("llc", "llc_dev")  # computed by probekit.eval.peers from the LLC series


def probe_signals() -> tuple[str, ...]:
    """The 2RDM signals: the registered ones. A name is a 2RDM signal or a scalar/peer signal, never both."""
    names = tuple(signal_names())
    for name in names:
        if name in SCALAR_SIGNALS or name in PEER_SIGNALS:
            kind = "scalar baseline" if name in SCALAR_SIGNALS else "peer signal"
            raise ProbekitError(
                f"the 2RDM signal {name!r} is registered under the name of the bench's {kind} {name!r}; "
                "a name can mean only one signal: register it under another name."
            )
    return names


@dataclass(frozen=True)
class SignalSpec:
    """What is computed from the probe losses before the alarm rule sees it."""

    statistic: str = "shc"
    window: int = 32  # records per 2RDM window (and per rolling scalar statistic)
    stride: int = 1  # use every stride-th record of the trajectory
    detrend: str = "none"  # inside the 2RDM window: none / linear / diff

    def check(self) -> None:
        known = probe_signals() + SCALAR_SIGNALS + PEER_SIGNALS
        if self.statistic not in known:
            raise ProbekitUsageError(
                f"The 'statistic' field of SignalSpec must be one of {', '.join(known)}. "
                f"Got {self.statistic!r} instead."
            )
        for name, low in (("window", 3), ("stride", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ProbekitUsageError(
                    f"The {name!r} field of SignalSpec must be an int >= {low}. Got {value!r} instead."
                )
        if self.detrend not in DETREND_MODES:
            raise ProbekitUsageError(
                f"The 'detrend' field of SignalSpec must be one of {', '.join(DETREND_MODES)}. "
                f"Got {self.detrend!r} instead."
            )

    @property
    def label(self) -> str:
        extra = "" if self.detrend == "none" else f",{self.detrend}"
        return f"{self.statistic}[W={self.window},k={self.stride}{extra}]"


def compute_signal(
    spec: SignalSpec,
    losses: np.ndarray | None,
    *,
    grad_norm: np.ndarray | None = None,
) -> np.ndarray:
    """The signal, one value per record of ``losses`` ([records, n], already strided)."""
    from probekit.rdm import rdm_series
    from probekit.rdm.indicators import rolling_autocorrelation, rolling_variance

    spec.check()
    if spec.statistic in PEER_SIGNALS:
        raise ProbekitUsageError(
            f"the {spec.statistic!r} signal comes from a run's LLC series (probekit.eval.peers), not from probe losses."
        )
    if spec.statistic == "grad_norm":
        if grad_norm is None:
            raise ProbekitUsageError("the 'grad_norm' signal needs the trajectory's stored gradient norms.")
        return np.asarray(grad_norm, dtype=np.float64)
    x = np.asarray(losses, dtype=np.float64)  # [records, n]
    if spec.statistic in SCALAR_SIGNALS:
        mean = x.mean(axis=1)  # [records]
        if spec.statistic == "mean_drop":
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.maximum.accumulate(mean) / np.maximum(mean, np.finfo(np.float64).tiny)
        if spec.statistic == "mean_var":
            return rolling_variance(mean, spec.window)
        return (1.0 + rolling_autocorrelation(mean, spec.window, lag=1)) / 2.0
    # a 2RDM signal: the signal table computes it (NaN until the window is full)
    series = rdm_series(x, spec.window, detrend=spec.detrend, top_k=1)
    return get_signal(spec.statistic).values(series)
