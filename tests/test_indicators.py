"""Classical early-warning indicators against direct computations (ewstools itself: test_peers_ewstools.py)."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from probekit.errors import ProbekitUsageError
from probekit.eval.scoring.signals import SignalSpec, compute_signal
from probekit.rdm.indicators import gaussian_detrend, kendall_trend, rolling_autocorrelation, rolling_variance


def _ar1_series(n=200, seed=0):
    rng = np.random.default_rng(seed)
    phi = np.linspace(0.1, 0.9, n)  # slowing down: the autocorrelation rises
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = phi[t] * x[t - 1] + rng.normal()
    return x + np.linspace(0, 3, n)  # and a trend to remove


def test_rolling_variance_and_autocorrelation_against_loops():
    x = _ar1_series()
    w = 25
    var = rolling_variance(x, w)
    ac = rolling_autocorrelation(x, w, lag=2)
    assert np.isnan(var[: w - 1]).all() and np.isnan(ac[: w - 1]).all()
    for t in range(w - 1, len(x)):
        win = x[t - w + 1 : t + 1]
        assert var[t] == pytest.approx(statistics.variance(win), rel=1e-12)
        assert ac[t] == pytest.approx(np.corrcoef(win[:-2], win[2:])[0, 1], rel=1e-10)
    assert np.isnan(rolling_autocorrelation(np.ones(10), 5)[4:]).all()  # constant windows: r undefined


def test_harness_scalar_baselines_are_these_indicators():
    x = np.abs(_ar1_series())[:, None] * np.ones((1, 4))  # [records, probes]: the mean loss is the series
    mean = x.mean(axis=1)
    np.testing.assert_array_equal(compute_signal(SignalSpec("mean_var", window=20), x), rolling_variance(mean, 20))
    np.testing.assert_array_equal(compute_signal(SignalSpec("mean_ar1", window=20), x),
                                  (1 + rolling_autocorrelation(mean, 20)) / 2)


def test_gaussian_detrend_is_a_reflected_gaussian_kernel():
    x = _ar1_series(120)
    residuals, trend = gaussian_detrend(x, 0.2)  # a fifth of the series
    sigma = (0.25 / 0.675) * 0.2 * len(x)
    radius = int(4.0 * sigma + 0.5)  # scipy's default truncation
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.concatenate([x[:radius][::-1], x, x[-radius:][::-1]])  # "reflect": the edge value repeated
    expected = np.convolve(padded, k, mode="valid")
    np.testing.assert_allclose(trend, expected, rtol=1e-12)
    np.testing.assert_allclose(residuals, x - expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gaussian_detrend(x, 24)[1], trend)  # 24 records = 0.2 of 120


def test_kendall_trend_is_tau_b_against_time():
    y = np.array([1.0, 3.0, 2.0, 2.0, 5.0, np.nan, 4.0])
    t = np.arange(len(y), dtype=float)
    ok = np.isfinite(y)
    yy, tt = y[ok], t[ok]
    concordant = discordant = ties = 0
    for i in range(len(yy)):
        for j in range(i + 1, len(yy)):
            d = np.sign(yy[j] - yy[i]) * np.sign(tt[j] - tt[i])
            concordant += d > 0
            discordant += d < 0
            ties += yy[j] == yy[i]
    n0 = len(yy) * (len(yy) - 1) / 2
    expected = (concordant - discordant) / math.sqrt(n0 * (n0 - ties))
    assert kendall_trend(y) == pytest.approx(expected, rel=1e-12)
    assert kendall_trend(rolling_autocorrelation(_ar1_series(400), 50)) > 0.3  # slowing down shows as a trend
    assert math.isnan(kendall_trend([2.0, 2.0, 2.0]))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: rolling_variance(np.ones((3, 3)), 2), r"rolling_variance takes a 1-D series\. Got an array of shape \(3, 3\)"),
        (lambda: rolling_variance(np.ones(9), 1), r"The 'window' parameter of rolling_variance must be an int >= 2 \(records\)\. Got 1"),
        (lambda: rolling_variance(np.ones(9), 0.25), r"must be an int >= 2 \(records\)\. Got 0\.25 instead"),
        (lambda: rolling_autocorrelation(np.ones(9), 5, lag=4), r"The 'lag' parameter .* \[1, 3\]\. Got 4 instead"),
        (lambda: gaussian_detrend(np.ones(9), 0), r"The 'bandwidth' parameter of gaussian_detrend must be a number > 0"),
        (lambda: kendall_trend(np.ones(4), np.ones(3)), r"kendall_trend: times has 3 values for 4 indicator values"),
    ],
)
def test_bad_input_is_refused(call, message):
    with pytest.raises(ProbekitUsageError, match=message):
        call()
