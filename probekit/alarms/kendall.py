"""Kendall-tau trend over a trailing window, with an autocorrelation-preserving surrogate p-value.

This is the earlywarnings convention for early-warning indicators. At record t,
with y = transform(series) and the trailing window y[t-window+1 .. t]:

- tau_obs is Kendall's tau-b of the window against time (time has no ties, so
  tau_b = S / sqrt(n0 * (n0 - n_ties)), S = sum_{i<j} sign(y_j - y_i),
  n0 = window * (window - 1) / 2, n_ties = number of tied pairs of y);
- phi is the lag-1 autocorrelation of the linearly detrended window, clipped to
  [-0.95, 0.95] and rounded to the 0.05 grid (bin k <-> phi = k / 20);
- the null distribution of tau for (window, phi) comes from ``n_surrogates``
  stationary AR(1) series of that length (x_0 ~ N(0, 1 / (1 - phi^2)),
  x_i = phi x_{i-1} + e_i), drawn with ``numpy.random.default_rng(seed)``.
  Every phi bin reuses the same innovations (common random numbers, so p moves
  smoothly with phi), and each null is cached per (window, bin, n_surrogates,
  seed): a long series costs at most 39 null simulations;
- p = (1 + #(tau_null >= tau_obs)) / (1 + n_surrogates), one-sided (rising trend).

The score is 1 - p and a record exceeds iff score > 1 - alpha, i.e. p < alpha
(compared on the score scale so that calibrated thresholds and scores share one
scale). The smallest attainable p is 1 / (1 + n_surrogates): an alpha at or
below it can never alarm, which warns. A window with fewer than ``window``
finite values, or with all values equal (tau undefined), has no score.
"""
from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np

from probekit.alarms.base import TRANSFORMS, AlarmRule, apply_transform
from probekit.errors import ProbekitWarning
from probekit.params import Interval

PHI_CLIP = 0.95
PHI_BINS_PER_UNIT = 20  # grid step 0.05
# Row blocks keep the [rows, pairs] difference matrices near 4M entries.
_PAIR_BUDGET = 1 << 22
_BLOCK = 8192


def _tau_b(s: np.ndarray, ties: np.ndarray, window: int) -> np.ndarray:
    """Kendall tau-b against time from S and the number of tied pairs; NaN if all tied."""
    n0 = window * (window - 1) // 2
    denom = np.sqrt(float(n0) * (n0 - ties))
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = s / denom
    tau[denom == 0] = np.nan
    return tau


@functools.lru_cache(maxsize=16)
def _pairs(w: int) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (i, j) of all pairs i < j of a window of length w."""
    i, j = np.triu_indices(w, 1)
    i.flags.writeable = j.flags.writeable = False
    return i, j


def _pair_counts(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """S = sum_{i<j} sign(y_j - y_i) and tied pairs, per row of rows [k, w] (exact ints)."""
    k, w = rows.shape
    i, j = _pairs(w)
    s = np.empty(k, dtype=np.int64)
    ties = np.empty(k, dtype=np.int64)
    step = max(1, _PAIR_BUDGET // i.size)
    for a in range(0, k, step):
        block = rows[a : a + step]
        diff = block[:, j] - block[:, i]  # [rows, pairs] = y_j - y_i
        s[a : a + step] = np.sign(diff).sum(axis=1).astype(np.int64)
        ties[a : a + step] = np.count_nonzero(diff == 0, axis=1)
    return s, ties


def _rolling_pair_counts(y: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """S and tied pairs for every window y[a : a + window], a = 0 .. n - window.

    Lag by lag: pairs (i, i + lag) inside window a are i = a .. a + window - lag - 1,
    a window sum of sign(y[i + lag] - y[i]) read off a cumulative sum. O(n * window)
    integer work, exact, no [n, window, window] tensor. NaN must be replaced first.
    """
    n = y.shape[0]
    m = n - window + 1
    s = np.zeros(m, dtype=np.int64)
    ties = np.zeros(m, dtype=np.int64)
    for lag in range(1, window):
        diff = y[lag:] - y[:-lag]  # [n - lag]
        c_s = np.concatenate(([0], np.cumsum(np.sign(diff).astype(np.int64))))
        c_t = np.concatenate(([0], np.cumsum(diff == 0, dtype=np.int64)))
        span = window - lag
        s += c_s[span : span + m] - c_s[:m]
        ties += c_t[span : span + m] - c_t[:m]
    return s, ties


def _phi_bins(rows: np.ndarray) -> np.ndarray:
    """Lag-1 autocorrelation of each linearly detrended row of rows [k, w], as grid bins.

    Rows must be C-contiguous copies: offline and online then reduce in the same
    order and agree bit for bit. A row with zero residual variance gets phi = 0.
    """
    w = rows.shape[1]
    t = np.arange(w) - (w - 1) / 2.0  # centred time
    mean = rows.mean(axis=1, keepdims=True)
    slope = np.sum((rows - mean) * t, axis=1, keepdims=True) / np.sum(t * t)
    r = rows - mean - slope * t  # residuals [k, w]
    num = np.sum(r[:, 1:] * r[:, :-1], axis=1)
    den = np.sum(r * r, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(den > 0, num / den, 0.0)
    return np.rint(np.clip(phi, -PHI_CLIP, PHI_CLIP) * PHI_BINS_PER_UNIT).astype(np.int64)


@functools.lru_cache(maxsize=512)
def null_taus(window: int, phi_bin: int, n_surrogates: int, seed: int) -> np.ndarray:
    """Sorted, read-only Kendall taus of ``n_surrogates`` stationary AR(1) series.

    phi = phi_bin / 20. Cached: the key is exactly the arguments.
    """
    phi = phi_bin / PHI_BINS_PER_UNIT
    e = np.random.default_rng(seed).standard_normal((n_surrogates, window))
    x = np.empty_like(e)
    x[:, 0] = e[:, 0] / np.sqrt(1.0 - phi * phi)  # start in the stationary distribution
    for i in range(1, window):
        x[:, i] = phi * x[:, i - 1] + e[:, i]
    s, ties = _pair_counts(x)
    tau = np.sort(_tau_b(s, ties, window))
    tau.flags.writeable = False
    return tau


def _scores_from(tau: np.ndarray, bins: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """1 - surrogate p-value for finite taus with their phi bins (offline and online)."""
    n = p["n_surrogates"]
    score = np.empty(tau.shape[0])
    for b in np.unique(bins):  # at most 39 bins, not records
        sel = bins == b
        null = null_taus(p["window"], int(b), n, p["seed"])
        n_ge = n - np.searchsorted(null, tau[sel], side="left")  # #(tau_null >= tau_obs)
        score[sel] = 1.0 - (1.0 + n_ge) / (1.0 + n)
    return score


class KendallTrend(AlarmRule):
    """Alarm on a significant rising Kendall trend of the (log-)signal in a trailing window.

    Parameters
    ----------
    window : int, default 50
        Records per trend window (t included); matches the z-score baseline.
    alpha : float, default 0.05
        Exceed iff the surrogate p-value < alpha.
    n_surrogates : int, default 500
        Null series per (window, phi) bin; the smallest p is 1 / (1 + n_surrogates).
    persistence : int, default 1
        A p-value already integrates a whole window, so one record suffices by default.
    transform : {"log", "none"}, default "log"
        Tau is rank-based and ignores it; it changes only the phi estimate.
    seed : int, default 0
        Seed of the surrogate generator (results are deterministic per seed).
    """

    name = "kendall"
    threshold_param = "alpha"
    _constraints = {
        "window": Interval(int, 4, None),
        "alpha": Interval(float, 0, 1, closed="right"),
        "n_surrogates": Interval(int, 1, None),
        "persistence": Interval(int, 1, None),
        "transform": TRANSFORMS,
        "seed": Interval(int, 0, None),
    }
    # On a coarser grid the window keeps at least 8 records, as the z-score's baseline does.
    record_params = {"window": 8, "persistence": 1}

    def __init__(
        self,
        *,
        window: int = 50,
        alpha: float = 0.05,
        n_surrogates: int = 500,
        persistence: int = 1,
        transform: str = "log",
        seed: int = 0,
    ) -> None:
        self.window = window
        self.alpha = alpha
        self.n_surrogates = n_surrogates
        self.persistence = persistence
        self.transform = transform
        self.seed = seed

    @property
    def score_threshold(self) -> float:
        return 1.0 - float(self.alpha)

    def with_score_threshold(self, h: float) -> "KendallTrend":
        return self.clone(alpha=1.0 - float(h))

    def _check(self) -> dict[str, Any]:
        params = super()._check()
        p_min = 1.0 / (1.0 + self.n_surrogates)
        if self.score_threshold >= 1.0 - p_min:
            warnings.warn(
                f"KendallTrend with alpha={self.alpha!r} can never alarm: the smallest "
                f"surrogate p-value is 1/(1 + n_surrogates) = {p_min:.3g}. "
                "Raise n_surrogates or alpha.",
                ProbekitWarning,
                stacklevel=3,
            )
        return params

    def _scores(self, x: np.ndarray, p: dict[str, Any]) -> np.ndarray:
        w = p["window"]
        y = apply_transform(x, p["transform"])
        n = y.shape[0]
        out = np.full(n, np.nan)
        if n < w:
            return out
        finite = ~np.isnan(y)
        full = np.convolve(finite, np.ones(w, dtype=np.int64), mode="valid") == w  # [n - w + 1]
        s, ties = _rolling_pair_counts(np.where(finite, y, 0.0), w)
        tau = _tau_b(s, ties, w)
        ok = np.flatnonzero(full & ~np.isnan(tau))  # window starts with a score
        if ok.size == 0:
            return out
        windows = np.lib.stride_tricks.sliding_window_view(y, w)
        bins = np.empty(ok.size, dtype=np.int64)
        for a in range(0, ok.size, _BLOCK):  # blocks of windows, not records
            rows = np.ascontiguousarray(windows[ok[a : a + _BLOCK]])
            bins[a : a + _BLOCK] = _phi_bins(rows)
        out[ok + w - 1] = _scores_from(tau[ok], bins, p)  # window a ends at record a + w - 1
        return out

    # Online: a buffer of the last `window` transformed values, oldest first.
    def _online_state(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"buffer": [float("nan")] * p["window"]}

    def _online_score(self, state: dict[str, Any], x: float, p: dict[str, Any]) -> float:
        y = float(apply_transform(np.array([x]), p["transform"])[0])
        state["buffer"] = state["buffer"][1:] + [y]
        rows = np.array([state["buffer"]], dtype=np.float64)
        if np.isnan(rows).any():
            return float("nan")
        s, ties = _pair_counts(rows)
        tau = _tau_b(s, ties, p["window"])
        if np.isnan(tau[0]):
            return float("nan")
        return float(_scores_from(tau, _phi_bins(rows), p)[0])


def kendall_trend_alarm(series: Any, **params: Any) -> np.ndarray:
    """Alarm indices of ``KendallTrend(**params)`` on ``series``."""
    return KendallTrend(**params).alarms(series)
