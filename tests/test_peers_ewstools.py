"""probekit's early-warning indicators against ewstools 2.1.3 on the same series and settings.

Optional (``pip install "probekit[peers]"``, then ``python -m pytest -m peers``):
the default suite neither needs nor imports ewstools. The conventions compared
and the differences by design are in ``probekit/rdm/indicators.py``.
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.peers, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:The inplace keyword")]  # ewstools' own pandas deprecations
ewstools = pytest.importorskip("ewstools")

from probekit.rdm.indicators import gaussian_detrend, kendall_trend, rolling_autocorrelation, rolling_variance  # noqa: E402


def _series(n, seed):
    rng = np.random.default_rng(seed)
    phi = np.linspace(0.0, 0.95, n)  # critical slowing down towards the end
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = phi[t] * x[t - 1] + rng.normal()
    return x + 0.01 * np.arange(n) ** 1.2


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("detrend", [None, 0.2, 30])
def test_variance_autocorrelation_and_kendall_tau_agree_with_ewstools(seed, detrend):
    x = _series(300, seed)
    window = 60  # records; ewstools reads 60 as records too (a value in (0, 1] would be a fraction)
    ts = ewstools.TimeSeries(data=x)
    if detrend is not None:
        ts.detrend(method="Gaussian", bandwidth=detrend)
        residuals, trend = gaussian_detrend(x, detrend)
        np.testing.assert_allclose(trend, ts.state["smoothing"].to_numpy(), rtol=1e-12, atol=1e-12)
        series = residuals
    else:
        series = x
    ts.compute_var(rolling_window=window)
    ts.compute_auto(rolling_window=window, lag=1)
    ts.compute_ktau()
    var, ac1 = rolling_variance(series, window), rolling_autocorrelation(series, window, lag=1)
    np.testing.assert_allclose(var, ts.ews["variance"].to_numpy(), rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(ac1, ts.ews["ac1"].to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True)
    # ewstools' tau runs over the records where any indicator is defined, which here is where both are
    assert kendall_trend(var) == pytest.approx(ts.ktau["variance"], rel=1e-12)
    assert kendall_trend(ac1) == pytest.approx(ts.ktau["ac1"], rel=1e-12)


def test_a_fractional_window_is_ewstools_only():
    """ewstools takes rolling_window=0.25 as a quarter of the series; probekit always takes records."""
    x = _series(200, 3)
    ts = ewstools.TimeSeries(data=x)
    ts.compute_var(rolling_window=0.25)
    np.testing.assert_allclose(rolling_variance(x, int(0.25 * len(x))), ts.ews["variance"].to_numpy(), rtol=1e-10,
                               equal_nan=True)
