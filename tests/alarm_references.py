"""References for the alarm-rule tests, written independently of the implementation.

Loops, ``statistics.median`` and scipy's tau-b stand in for the vectorised code of
``probekit.alarms``; ``noisy_series`` and ``planted`` make the series the tests score.
"""
from __future__ import annotations

import math
import statistics

import numpy as np
import scipy.stats

TINY = np.finfo(np.float64).tiny


def ref_alarms(exceed, persistence):
    out, run = [], 0
    for t, e in enumerate(exceed):
        run = run + 1 if e else 0
        if run == persistence:
            out.append(t)
    return out


def _ref_transform(series, transform):
    out = []
    for v in series:
        if v is None or not math.isfinite(v):
            out.append(None)
        elif transform == "log":
            out.append(math.log(max(v, TINY)))
        else:
            out.append(float(v))
    return out


def ref_zscore(series, baseline, min_baseline, transform):
    y = _ref_transform(series, transform)
    out = []
    for t in range(len(y)):
        base = [v for v in y[max(0, t - baseline) : t] if v is not None]
        if y[t] is None or len(base) < min_baseline:
            out.append(math.nan)
            continue
        med = statistics.median(base)
        mad = statistics.median([abs(v - med) for v in base])
        scale = max(1.4826 * mad, 1e-6 * abs(med), TINY)
        out.append((y[t] - med) / scale)
    return np.array(out)


def ref_running_min(series, min_history):
    out, m, seen = [], math.inf, 0
    for v in series:
        if v is None or not math.isfinite(v):
            out.append(math.nan)
            continue
        m, seen = min(m, v), seen + 1
        if seen < min_history:
            out.append(math.nan)
        elif v == m:
            out.append(1.0)
        elif m == 0:
            out.append(math.inf)
        else:
            out.append(v / m)
    return np.array(out)


def ref_phi(window):
    w = len(window)
    tbar, ybar = (w - 1) / 2, sum(window) / w
    slope = sum((t - tbar) * (y - ybar) for t, y in enumerate(window)) / sum(
        (t - tbar) ** 2 for t in range(w)
    )
    r = [y - ybar - slope * (t - tbar) for t, y in enumerate(window)]
    den = sum(v * v for v in r)
    return sum(r[i] * r[i + 1] for i in range(w - 1)) / den if den > 0 else 0.0


_REF_NULL = {}


def ref_null(w, phi_bin, n, seed):
    """AR(1) surrogates as documented in kendall.py, taus by scipy."""
    key = (w, phi_bin, n, seed)
    if key not in _REF_NULL:
        phi = phi_bin / 20
        e = np.random.default_rng(seed).standard_normal((n, w))
        taus = []
        for row in e:
            x = [row[0] / math.sqrt(1 - phi * phi)]
            for i in range(1, w):
                x.append(phi * x[-1] + row[i])
            taus.append(scipy.stats.kendalltau(range(w), x).statistic)
        _REF_NULL[key] = taus
    return _REF_NULL[key]


def ref_kendall(series, window, n_surrogates, seed, transform="log"):
    y = _ref_transform(series, transform)
    out = [math.nan] * len(y)
    for t in range(window - 1, len(y)):
        win = y[t - window + 1 : t + 1]
        if any(v is None for v in win) or len(set(win)) == 1:
            continue
        tau = scipy.stats.kendalltau(range(window), win).statistic
        b = round(min(max(ref_phi(win), -0.95), 0.95) * 20)
        null = ref_null(window, b, n_surrogates, seed)
        # tolerance: scipy divides by two square roots, the implementation by one
        n_ge = sum(1 for v in null if v >= tau - 1e-9)
        out[t] = 1 - (1 + n_ge) / (1 + n_surrogates)
    return np.array(out)


def noisy_series(rng, n, nan_frac=0.1, zeros=False, decimals=None):
    """Log-normal AR(1) noise with a planted jump, NaN holes, optional zeros and ties."""
    y = np.zeros(n)
    for t in range(1, n):
        y[t] = 0.6 * y[t - 1] + 0.3 * rng.standard_normal()
    jump = rng.integers(n // 3, n)
    y[jump:] += rng.choice([0.0, 1.5, 3.0])
    x = np.exp(y)
    if decimals is not None:
        x = np.round(x, decimals)
    x[rng.random(n) < nan_frac] = np.nan
    start = rng.integers(0, n)
    x[start : start + rng.integers(0, 12)] = np.nan
    if zeros:
        x[rng.random(n) < 0.02] = 0.0
    return x


def planted(n=300, t0=200, kind="jump", seed=1):
    rng = np.random.default_rng(seed)
    y = np.zeros(n)
    for t in range(1, n):
        y[t] = 0.5 * y[t - 1] + 0.1 * rng.standard_normal()
    if kind == "jump":
        y[t0:] += 3.0
    else:
        y[t0:] += 0.08 * np.arange(1, n - t0 + 1)
    return np.exp(y)
