"""The classical early-warning indicators of a scalar series (critical slowing down).

Rolling variance and lag-1 autocorrelation of a (detrended) series over a
trailing window, and the Kendall-tau trend of an indicator against time: the
indicators of Scheffer et al. (2009) and Dakos et al. (2012), as the
earlywarnings R package and the ewstools Python package compute them. The
benchmark's scalar baselines ``mean_var`` and ``mean_ar1`` are these, on the
mean probe loss (``probekit.eval.scoring.signals``).

Conventions, chosen to agree with ewstools 2.1.3 (``TimeSeries.detrend``,
``compute_var``, ``compute_auto``, ``compute_ktau``; checked against it by
``tests/test_peers_ewstools.py``, run with ``pytest -m peers`` after
``pip install "probekit[peers]"``):

- the window is trailing and includes record t; the first ``window - 1``
  records have no value (NaN), like pandas' ``rolling(window)``;
- the variance uses ddof = 1;
- the lag-k autocorrelation is Pearson's r between the window's first
  ``window - k`` values and its last ``window - k`` values, each centred on its
  own mean (pandas' ``Series.autocorr``); NaN when either part is constant;
- Gaussian detrending subtracts ``scipy.ndimage.gaussian_filter`` of the whole
  series with sigma = (0.25 / 0.675) * bandwidth (the kernel's quartiles at
  +/- bandwidth / 4, as R's ``ksmooth``), reflected at the ends; a bandwidth in
  (0, 1] is a fraction of the series length;
- the Kendall tau is tau-b of the indicator's finite values against time.

Where probekit differs by design: ewstools takes a window in (0, 1] as a
fraction of the series (``int(fraction * length)``), probekit always takes a
number of records, because a live monitor has no series length to take a
fraction of. ewstools' Lowess detrending is not reimplemented. The harness's
``mean_ar1`` reports (1 + r) / 2, which is r rescaled to [0, 1] so that one
family of alarm rules (ratio to a running minimum: non-negative series) serves
it; :func:`rolling_autocorrelation` returns r itself.
"""
from __future__ import annotations

import numpy as np

from probekit.errors import ProbekitUsageError

__all__ = ["gaussian_detrend", "kendall_trend", "rolling_autocorrelation", "rolling_variance"]


def _series(x: object, owner: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ProbekitUsageError(f"{owner} takes a 1-D series. Got an array of shape {arr.shape}.")
    return arr


def _window(window: object, owner: str, low: int = 2) -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < low:
        raise ProbekitUsageError(f"The 'window' parameter of {owner} must be an int >= {low} (records). "
                                 f"Got {window!r} instead.")
    return int(window)


def _trailing(x: np.ndarray, window: int) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(x, window)  # [T - window + 1, window]


def rolling_variance(x: object, window: int) -> np.ndarray:
    """Variance (ddof 1) of each trailing window of ``window`` records; NaN for the first ``window - 1``."""
    x = _series(x, "rolling_variance")
    window = _window(window, "rolling_variance")
    out = np.full(x.shape, np.nan)
    if x.size >= window:
        out[window - 1:] = _trailing(x, window).var(axis=1, ddof=1)
    return out


def rolling_autocorrelation(x: object, window: int, lag: int = 1) -> np.ndarray:
    """Lag-``lag`` autocorrelation (Pearson, each part centred on its own mean) of each trailing window."""
    x = _series(x, "rolling_autocorrelation")
    window = _window(window, "rolling_autocorrelation", low=3)
    if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)) or not 1 <= lag <= window - 2:
        raise ProbekitUsageError(f"The 'lag' parameter of rolling_autocorrelation must be an int in [1, window - 2] "
                                 f"= [1, {window - 2}]. Got {lag!r} instead.")
    out = np.full(x.shape, np.nan)
    if x.size < window:
        return out
    view = _trailing(x, window)
    a = view[:, :-lag] - view[:, :-lag].mean(axis=1, keepdims=True)
    b = view[:, lag:] - view[:, lag:].mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / den
    out[window - 1:] = np.where(den > 0, r, np.nan)
    return out


def gaussian_detrend(x: object, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    """(residuals, trend): the series minus its Gaussian-kernel smoothing (ewstools' convention)."""
    from scipy.ndimage import gaussian_filter

    x = _series(x, "gaussian_detrend")
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float, np.floating, np.integer)) or bandwidth <= 0:
        raise ProbekitUsageError("The 'bandwidth' parameter of gaussian_detrend must be a number > 0 (a fraction of "
                                 f"the series in (0, 1], or records above 1). Got {bandwidth!r} instead.")
    records = bandwidth * x.size if bandwidth <= 1 else float(bandwidth)
    trend = gaussian_filter(x, sigma=(0.25 / 0.675) * records, mode="reflect")
    return x - trend, trend


def kendall_trend(indicator: object, times: object | None = None) -> float:
    """Kendall's tau-b of an indicator's finite values against time (NaN with fewer than 2, or if constant)."""
    from scipy.stats import kendalltau

    y = _series(indicator, "kendall_trend")
    t = np.arange(y.size, dtype=np.float64) if times is None else _series(times, "kendall_trend")
    if t.shape != y.shape:
        raise ProbekitUsageError(f"kendall_trend: times has {t.size} values for {y.size} indicator values.")
    ok = np.isfinite(y) & np.isfinite(t)
    if ok.sum() < 2 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(kendalltau(t[ok], y[ok]).statistic)
