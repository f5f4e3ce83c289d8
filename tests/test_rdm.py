"""The streaming and offline 2RDM against an independent dense reference.

The reference builds the n x n covariance with numpy (np.cov, np.polyfit,
np.diff) and diagonalises it with eigvalsh: nothing shared with the Gram route.
"""
from __future__ import annotations

import contextlib
import pickle

import numpy as np
import pytest

from probekit.errors import ProbekitUsageError, ProbekitWarning
from probekit.rdm import DynamicalRDM, rdm_series, window_stats

RTOL = 1e-9


def dense_reference(window_records: np.ndarray, detrend: str) -> dict:
    """SHC, PR, trace, eigenvalues and eigenvectors from the n x n matrix itself."""
    x = np.asarray(window_records, dtype=np.float64)
    w, n = x.shape
    if detrend == "none":
        c = np.cov(x, rowvar=False, ddof=1).reshape(n, n)
    elif detrend == "linear":
        t = np.arange(w)
        coeffs = np.polyfit(t, x, deg=1)  # [2, n]
        resid = x - (np.outer(t, coeffs[0]) + coeffs[1])
        c = resid.T @ resid / (w - 2)
    else:
        c = np.cov(np.diff(x, axis=0), rowvar=False, ddof=1).reshape(n, n)
    evals, evecs = np.linalg.eigh(c)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    tr = evals.sum()
    return {
        "shc": float(np.var(evals)),
        "pr": float(tr**2 / (evals**2).sum()),
        "trace": float(tr),
        "evals": evals,
        "evecs": evecs,
    }


def assert_close(actual, expected, rtol=RTOL, scale=None):
    # Relative to the quantity's own scale (an eigenvalue near zero is judged
    # against the largest one, not against itself).
    scale = np.max(np.abs(expected)) if scale is None else scale
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * max(scale, 1e-300))


SHAPES = [(1, 5), (2, 3), (3, 20), (7, 4), (16, 16), (33, 8), (64, 50), (300, 12), (5, 64)]


@pytest.mark.parametrize("n,w", SHAPES)
@pytest.mark.parametrize("detrend", ["none", "linear", "diff"])
def test_streaming_matches_dense_reference(n, w, detrend):
    if w < 3 and detrend != "none":
        pytest.skip("linear and diff need W >= 3")
    rng = np.random.default_rng(n * 1000 + w)
    t = w + 17
    # Losses with a large common offset and a drift: the regime where naive
    # inner products lose digits.
    x = 50.0 + rng.gamma(2.0, 1.0, size=(t, n)) + np.linspace(0, 30, t)[:, None]
    rdm = DynamicalRDM(window=w, detrend=detrend, top_k=3)
    for i, row in enumerate(x):
        rdm.update(row.astype(np.float32))
        stats = rdm.compute()
        if i < w - 1:
            assert stats is None
            continue
        expected = dense_reference(x[i - w + 1 : i + 1].astype(np.float32), detrend)
        assert_close(stats.shc, expected["shc"])
        assert_close(stats.pr, expected["pr"])
        assert_close(stats.trace, expected["trace"])
        k = min(3, n)
        assert_close(stats.eigenvalues[:k], expected["evals"][:k], scale=expected["evals"][0])
        # The spectrum holds every non-zero eigenvalue.
        m = len(stats.spectrum)
        assert_close(stats.spectrum, expected["evals"][:m], scale=expected["evals"][0])
        assert_close(expected["evals"][m:], np.zeros(n - m), scale=expected["evals"][0])


@pytest.mark.parametrize("detrend", ["none", "linear", "diff"])
def test_loadings_are_the_dense_eigenvectors(detrend):
    rng = np.random.default_rng(7)
    n, w = 40, 12
    # Planted, well-separated modes so eigenvectors are well defined.
    modes = np.linalg.qr(rng.normal(size=(n, 3)))[0].T
    amps = rng.normal(size=(w, 3)) * np.array([9.0, 4.0, 2.0])
    x = 3.0 + amps @ modes + 0.01 * rng.normal(size=(w, n))
    rdm = DynamicalRDM(window=w, detrend=detrend, top_k=3)
    for row in x:
        rdm.update(row)
    stats = rdm.compute()
    expected = dense_reference(x, detrend)
    for i in range(3):
        overlap = abs(stats.loadings[i] @ expected["evecs"][:, i])
        assert overlap == pytest.approx(1.0, abs=1e-9)
        assert np.linalg.norm(stats.loadings[i]) == pytest.approx(1.0, abs=1e-12)
        assert stats.loadings[i][np.argmax(np.abs(stats.loadings[i]))] > 0


@pytest.mark.parametrize("detrend", ["none", "linear", "diff"])
@pytest.mark.parametrize("stride", [1, 3])
def test_offline_series_equals_streaming(detrend, stride):
    rng = np.random.default_rng(3)
    t, n, w = 260, 30, 9
    x = rng.normal(size=(t, n)).cumsum(axis=0)
    x[[20, 21, 100]] = np.nan  # rejected in both paths
    x[150, 4] = np.inf
    steps = np.arange(t) * 5
    with pytest.warns(ProbekitWarning, match="rejected"):
        series = rdm_series(x, window=w, stride=stride, detrend=detrend, steps=steps,
                            loadings_at=[-1, w - 1])
    rdm = DynamicalRDM(window=w, stride=stride, detrend=detrend)
    got = []
    with pytest.warns(ProbekitWarning, match="rejected"):
        for row, step in zip(x, steps):
            before = rdm.n_records
            rdm.update(row, step=step)
            if rdm.n_records > before:
                got.append(rdm.compute())
    assert len(got) == len(series)
    assert rdm.n_rejected == series.n_rejected
    for i, stats in enumerate(got):
        if stats is None:
            assert np.isnan(series.shc[i])
            continue
        assert series.steps[i] == stats.step
        assert_close(series.shc[i], stats.shc)
        assert_close(series.pr[i], stats.pr)
        assert_close(series.eigenvalues[i], stats.eigenvalues, scale=stats.eigenvalues[0])
    last = len(series) - 1
    np.testing.assert_allclose(series.loadings[last], got[-1].loadings, atol=1e-9)


def test_nan_record_is_rejected_and_never_poisons_the_window():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(20, 6))
    clean = DynamicalRDM(window=5)
    dirty = DynamicalRDM(window=5)
    with pytest.warns(ProbekitWarning, match="rejected a record with NaN or inf"):
        for i, row in enumerate(x):
            if i == 8:
                dirty.update(np.full(6, np.nan))
                dirty.update(np.r_[row[:5], np.inf])
            clean.update(row)
            dirty.update(row)
    assert dirty.n_rejected == 2 and dirty.n_records == clean.n_records == 20
    assert dirty.compute().shc == pytest.approx(clean.compute().shc, rel=1e-12)
    assert np.isfinite(dirty.compute().shc)


def test_fewer_than_window_records_has_no_value_yet():
    rdm = DynamicalRDM(window=4)
    for i in range(3):
        rdm.update([1.0 * i, 2.0, 0.5 * i])
        assert rdm.compute() is None and not rdm.ready
    rdm.update([3.0, 2.0, 1.0])
    assert rdm.ready and rdm.compute() is not None
    series = rdm_series(np.arange(12.0).reshape(4, 3) ** 2, window=4)
    assert np.isnan(series.shc[:3]).all() and np.isfinite(series.shc[3])


@pytest.mark.parametrize("detrend", ["none", "linear", "diff"])
def test_constant_window_has_zero_shc_and_undefined_pr(detrend):
    rdm = DynamicalRDM(window=4, detrend=detrend)
    # Drift first, so the reference is far from the constant value.
    for v in [0.0, 5.0, 9.0, 30.0, 0.1, 0.1, 0.1, 0.1]:
        rdm.update([v, 2 * v, 0.3])
    stats = rdm.compute()
    assert stats.degenerate
    assert stats.shc == 0.0 and stats.trace == 0.0 and np.isnan(stats.pr)
    assert np.isnan(stats.loadings).all()
    assert stats.top_probes().size == 0
    series = rdm_series([[v, 2 * v, 0.3] for v in [0.0, 5.0, 9.0, 30.0, 0.1, 0.1, 0.1, 0.1]],
                        window=4, detrend=detrend)
    assert series.degenerate[-1] and series.shc[-1] == 0.0 and np.isnan(series.pr[-1])
    assert not series.degenerate[-2]


def test_single_probe():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 1))
    rdm = DynamicalRDM(window=6, top_k=3)
    for row in x:
        rdm.update(row)
    stats = rdm.compute()
    expected_var = np.var(x[-6:, 0], ddof=1)
    assert stats.shc == pytest.approx(0.0, abs=1e-15)  # one eigenvalue: no spread
    assert stats.pr == pytest.approx(1.0)
    assert stats.trace == pytest.approx(expected_var, rel=1e-12)
    assert stats.eigenvalues[0] == pytest.approx(expected_var, rel=1e-12)
    assert np.all(stats.eigenvalues[1:] == 0.0)
    assert stats.loadings[0] == pytest.approx([1.0])


def test_compute_is_pure_and_cached():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 10))
    a, b = DynamicalRDM(window=8), DynamicalRDM(window=8)
    for i, row in enumerate(x):
        a.update(row)
        b.update(row)
        if i % 3 == 0:
            before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in a.state_dict().items()}
            first = a.compute()
            assert a.compute() is first  # cached
            after = a.state_dict()
            for key, value in before.items():
                if isinstance(value, np.ndarray):
                    np.testing.assert_array_equal(after[key], value)
                else:
                    assert after[key] == value
    # Computing along the way changed nothing about the result.
    assert a.compute().shc == b.compute().shc


def test_merge_of_probe_shards_matches_all_probes_in_any_order():
    rng = np.random.default_rng(9)
    t, n, w = 45, 24, 10
    x = rng.normal(size=(t, n)).cumsum(axis=0) + 100.0
    ids = [f"p{i}" for i in range(n)]
    bounds = [(0, 5), (5, 17), (17, 24)]

    def shard(lo, hi):
        rdm = DynamicalRDM(window=w, probe_ids=ids[lo:hi])
        for step, row in enumerate(x):
            rdm.update(row[lo:hi], step=step)
        return rdm

    whole = shard(0, n).compute()
    for order in [(0, 1, 2), (2, 0, 1), (1, 2, 0)]:
        parts = [shard(*bounds[i]) for i in order]
        merged = parts[0].merge(*parts[1:])
        stats = merged.compute()
        assert merged.n_probes == n
        assert stats.shc == pytest.approx(whole.shc, rel=1e-10)
        assert stats.pr == pytest.approx(whole.pr, rel=1e-10)
        np.testing.assert_allclose(stats.eigenvalues, whole.eigenvalues, rtol=1e-10)
        perm = [merged.probe_ids.index(p) for p in ids]
        np.testing.assert_allclose(stats.loadings[:, perm], whole.loadings, atol=1e-9)


def test_merge_refuses_misaligned_shards():
    a, b = DynamicalRDM(window=3), DynamicalRDM(window=3)
    for v in range(5):
        a.update([v, v * v])
        b.update([v + 1.0])
    b.update([7.0])
    with pytest.raises(ProbekitUsageError, match="same record history; these differ in updates 5 vs 6"):
        a.merge(b)
    with pytest.raises(ProbekitUsageError, match="same window, stride and detrend"):
        a.merge(DynamicalRDM(window=4))
    with pytest.raises(ProbekitUsageError, match="takes DynamicalRDM shards"):
        a.merge(np.zeros(3))


@pytest.mark.parametrize("order", ["clean_first", "rejecting_first"])
def test_merge_refuses_a_shard_that_rejected_records(order):
    # A shard whose every record was rejected (all NaN) used to vanish from the merge:
    # 4 or 5 probes instead of 9 and n_rejected 0, depending on the order.
    clean, rejecting = DynamicalRDM(window=3), DynamicalRDM(window=3)
    for step in range(6):
        clean.update(np.arange(4.0) * step, step=step)
        with pytest.warns(ProbekitWarning, match="rejected") if step == 0 else contextlib.nullcontext():
            rejecting.update(np.full(5, np.nan), step=step)
    first, second = (clean, rejecting) if order == "clean_first" else (rejecting, clean)
    before = first.state_dict()
    with pytest.raises(ProbekitUsageError, match="admitted records 6 vs 0; rejected records 0 vs 6|"
                                                 "admitted records 0 vs 6; rejected records 6 vs 0"):
        first.merge(second)
    after = first.state_dict()
    assert first.n_probes == (4 if order == "clean_first" else 5)  # left as it was
    for key, value in before.items():
        assert np.array_equal(np.asarray(after[key]), np.asarray(value)), key


def test_merge_refuses_a_record_rejected_on_one_shard_only():
    a, b = DynamicalRDM(window=3), DynamicalRDM(window=3)
    for step in range(5):
        a.update([step, step + 1.0], step=step)
        if step == 2:
            with pytest.warns(ProbekitWarning):
                b.update([np.nan], step=step)
        else:
            b.update([step * 2.0], step=step)
    with pytest.raises(ProbekitUsageError, match="admitted records 5 vs 4; rejected records 0 vs 1"):
        a.merge(b)


def test_merge_refuses_shards_that_rejected_different_records_long_ago():
    # Same counts, and the differing records have left the window: the histories still differ.
    a, b = DynamicalRDM(window=8), DynamicalRDM(window=8)
    with pytest.warns(ProbekitWarning):
        for step in range(20):
            a.update([np.nan] if step == 3 else [float(step)], step=step)
            b.update([np.nan] if step == 4 else [float(step) ** 2], step=step)
    assert a.n_rejected == b.n_rejected == 1 and a.n_records == b.n_records == 19
    with pytest.raises(ProbekitUsageError, match="which records were admitted and which rejected"):
        a.merge(b)


def test_merge_of_shards_that_rejected_the_same_records_keeps_every_probe():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 6))
    x[4] = np.nan  # every shard sees this record as NaN and rejects it
    whole = DynamicalRDM(window=4)
    left, right = DynamicalRDM(window=4), DynamicalRDM(window=4)
    with pytest.warns(ProbekitWarning):
        for step, row in enumerate(x):
            whole.update(row, step=step)
            left.update(row[:2], step=step)
            right.update(row[2:], step=step)
    merged = left.merge(right)
    expected = whole.compute()
    assert merged.n_probes == 6 and merged.n_rejected == 1 == whole.n_rejected
    assert merged.compute().shc == pytest.approx(expected.shc, rel=1e-10)


def test_state_dict_round_trip_resumes_identically():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 7))
    full = DynamicalRDM(window=6, detrend="linear")
    for row in x:
        full.update(row)
    first = DynamicalRDM(window=6, detrend="linear")
    for row in x[:23]:
        first.update(row)
    state = pickle.loads(pickle.dumps(first.state_dict()))
    resumed = DynamicalRDM(window=6, detrend="linear")
    resumed.load_state_dict(state)
    for row in x[23:]:
        resumed.update(row)
    assert resumed.compute().shc == full.compute().shc
    np.testing.assert_array_equal(resumed.compute().loadings, full.compute().loadings)
    with pytest.raises(ProbekitUsageError, match="saved with"):
        DynamicalRDM(window=7, detrend="linear").load_state_dict(state)
    with pytest.raises(ProbekitUsageError, match="made by DynamicalRDM.state_dict"):
        resumed.load_state_dict({"window": 6})


def test_reset_forgets_records_and_shape():
    rdm = DynamicalRDM(window=2)
    for v in range(3):
        rdm.update([v, 1.0, 2.0])
    rdm.reset()
    assert rdm.n_records == 0 and rdm.compute() is None and rdm.n_probes is None
    rdm.update([1.0])  # a different probe count is fine after a reset


def test_torch_input_and_float32_are_accepted():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    a, b = DynamicalRDM(window=6), DynamicalRDM(window=6)
    for row in x:
        a.update(torch.from_numpy(row))
        b.update(row.astype(np.float64))
    assert a.compute().shc == b.compute().shc


def test_stride_admits_every_kth_record():
    rdm = DynamicalRDM(window=3, stride=4)
    for i in range(12):
        rdm.update([float(i), float(i * i)])
    assert rdm.n_records == 3
    np.testing.assert_array_equal(rdm.window_steps(), [0, 4, 8])
    np.testing.assert_allclose(rdm.window_records(), [[0, 0], [4, 16], [8, 64]])


def test_window_stats_matches_dense_reference():
    x = np.random.default_rng(1).normal(size=(9, 30))
    stats = window_stats(x, top_k=2)
    expected = dense_reference(x, "none")
    assert_close(stats.shc, expected["shc"])
    assert_close(stats.pr, expected["pr"])
    with pytest.raises(ProbekitUsageError, match="NaN or inf"):
        window_stats(np.r_[x, np.full((1, 30), np.nan)])


def test_derived_signals():
    x = np.random.default_rng(8).normal(size=(40, 12))
    series = rdm_series(x, window=10, top_k=2)
    i = 25
    expected = dense_reference(x[i - 9 : i + 1], "none")
    ev = expected["evals"]
    p = ev[ev > 1e-12 * ev[0]] / ev.sum()
    assert series.leading_share[i] == pytest.approx(ev[0] / ev.sum(), rel=1e-9)
    assert series.spectral_entropy[i] == pytest.approx(-(p * np.log(p)).sum(), rel=1e-9)
    assert series.log_shc[i] == pytest.approx(np.log(expected["shc"]), rel=1e-9)
    assert set(series.columns()) >= {"step", "shc", "pr", "lambda_1", "lambda_2", "mean_loss"}
    # the streaming path reads the same definitions (probekit.rdm.spectral)
    rdm = DynamicalRDM(window=10, top_k=2)
    for row in x[: i + 1]:
        rdm.update(row)
    stats = rdm.compute()
    assert stats.leading_share == pytest.approx(ev[0] / ev.sum(), rel=1e-9)
    assert stats.log_shc == pytest.approx(np.log(expected["shc"]), rel=1e-9)


def test_derived_statistics_of_a_degenerate_window():
    series = rdm_series(np.ones((6, 3)), window=4)
    rdm = DynamicalRDM(window=4)
    for row in np.ones((6, 3)):
        rdm.update(row)
    stats = rdm.compute()
    assert stats.degenerate and series.degenerate[-1]
    assert stats.log_shc == series.log_shc[-1] == -np.inf  # SHC is exactly 0
    assert np.isnan(stats.leading_share) and np.isnan(series.leading_share[-1])  # no direction: 0 / 0
    assert np.isnan(series.spectral_entropy[-1])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"window": 1}, r"The 'window' parameter of DynamicalRDM must be an int in the range \[2, inf\)\. Got 1"),
        ({"window": 2, "detrend": "linear"}, r"must be at least 3 with detrend='linear'"),
        ({"window": 8, "detrend": "quadratic"}, r"'detrend' parameter .* one of 'none', 'linear', 'diff'"),
        ({"window": 8, "stride": 0}, r"'stride' parameter"),
        ({"window": 8, "top_k": -1}, r"'top_k' parameter"),
        ({"window": 8.0}, r"'window' parameter"),
        ({"window": 8, "probe_ids": ["a"]}, r"1 probe_ids but the first record has 3 losses"),
    ],
)
def test_bad_parameters_fail_with_one_line(kwargs, match):
    rdm = DynamicalRDM(**kwargs)  # construction only stores
    with pytest.raises(ProbekitUsageError, match=match):
        rdm.update([1.0, 2.0, 3.0])


def test_bad_records_fail_clearly():
    rdm = DynamicalRDM(window=3)
    rdm.update([1.0, 2.0])
    with pytest.raises(ProbekitUsageError, match="got 3 losses but the window holds records of 2"):
        rdm.update([1.0, 2.0, 3.0])
    with pytest.raises(ProbekitUsageError, match="one record at a time"):
        rdm.update([[1.0, 2.0]])
    with pytest.raises(ProbekitUsageError, match="cannot read as numbers"):
        rdm.update(["a", "b"])
    with pytest.raises(ProbekitUsageError, match="non-empty 2-D"):
        rdm_series(np.zeros(5), window=3)
    with pytest.raises(ProbekitUsageError, match="'steps' parameter of rdm_series"):
        rdm_series(np.zeros((5, 2)), window=3, steps=[1, 2])
    with pytest.raises(ProbekitUsageError, match="'loadings_at' parameter"):
        rdm_series(np.zeros((5, 2)), window=3, loadings_at=[9])


@pytest.mark.parametrize("detrend", ["none", "linear", "diff"])
def test_fast_detrending_equals_the_explicit_operator(detrend):
    from probekit.rdm.spectral import detrend_operator, detrended_gram, q_transpose

    rng = np.random.default_rng(12)
    w = 11
    x = rng.normal(size=(w, 7))
    q, dof = detrend_operator(w, detrend)
    s = (x @ x.T)[None]
    expected = q @ s[0] @ q.T
    np.testing.assert_allclose(detrended_gram(s, detrend)[0], expected, atol=1e-12)
    u = rng.normal(size=(q.shape[0], 2))
    np.testing.assert_allclose(q_transpose(u, detrend), q.T @ u, atol=1e-12)
    # The explicit operator is what np.cov / polyfit / np.diff mean.
    ref = dense_reference(x, detrend)
    c = (q @ x).T @ (q @ x) / dof
    assert np.trace(c) == pytest.approx(ref["trace"], rel=1e-12)
