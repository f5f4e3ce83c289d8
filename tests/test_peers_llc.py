"""The LLC signal with devinterp 2.0.1: the estimator against a known learning coefficient, and the peer bench.

Optional (``pip install "probekit[peers]"``, then ``python -m pytest -m peers``;
the end-to-end benchmark also needs ``slow``: ``-m "peers and slow"`` or
``-m "peers or slow"``).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = [pytest.mark.peers, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]
pytest.importorskip("devinterp")

import torch  # noqa: E402

from probekit.eval.peers.llc import LLCData, LLCSettings, estimate_llc  # noqa: E402
from probekit.selectors.gradient import _LOSSES  # noqa: E402


@pytest.mark.parametrize("d", [4, 8])
def test_llc_of_a_regular_model_is_half_its_dimension(d):
    # Linear regression at its least-squares minimum is a regular model: lambda = d / 2 exactly
    # (whatever the loss's scale). devinterp's llc() through probekit's row-index adapter must find it.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, d, generator=g)
    y = x @ torch.randn(d, 1, generator=g) + torch.randn(2000, 1, generator=g)
    model = torch.nn.Linear(d, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.linalg.lstsq(x, y).solution.T)
    est = estimate_llc(model, LLCData(x, y, _LOSSES["mse"], None, "test"),
                       LLCSettings(lr=3e-3, localization=0.0, batch_size=64, num_chains=4, num_draws=400))
    assert est["llc"] == pytest.approx(d / 2, rel=0.3)
    assert len(est["per_chain"]) == 4 and est["seconds"] > 0


def test_only_the_named_parameters_are_sampled():
    # Two regression weights, one held at its minimum: the LLC is that of the other alone, 1/2.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 2, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0]]) + torch.randn(2000, 1, generator=g)

    class TwoWeights(torch.nn.Module):
        def __init__(self, w):
            super().__init__()
            self.a = torch.nn.Parameter(w[:1].clone())
            self.b = torch.nn.Parameter(w[1:].clone())

        def forward(self, inputs):
            return inputs[:, :1] * self.a + inputs[:, 1:] * self.b

    model = TwoWeights(torch.linalg.lstsq(x, y).solution[:, 0])
    before = [p.detach().clone() for p in model.parameters()]
    settings = LLCSettings(lr=3e-3, localization=0.0, batch_size=64, num_chains=4, num_draws=400)
    both = estimate_llc(model, LLCData(x, y, _LOSSES["mse"], None, "test"), settings)["llc"]
    one = estimate_llc(model, LLCData(x, y, _LOSSES["mse"], ["a"], "test"), settings)["llc"]
    # SGLD noise: ~0.15 over 4 chains here, hence the absolute tolerance; the order is the point
    assert both == pytest.approx(1.0, abs=0.4) and one == pytest.approx(0.5, abs=0.4) and one < both
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))  # the caller's model stays put


@pytest.mark.slow
def test_peer_bench_end_to_end(tmp_path, monkeypatch):
    """`bench --peers` on one small family: LLC series cached beside the trajectories, peer cells, report, figure."""
    from probekit.eval.bench import BenchGrid, run_grid
    from probekit.eval.reports.bench_figures import write_figures
    from probekit.eval.reports.report import write_report

    grid = BenchGrid(families=("deep-linear",), seeds=(0, 1), designs=("random",), sizes=(8,),
                     scalar_baselines=("mean_drop", "mean_var"), peers=("llc", "llc_dev"))
    result = run_grid(grid, tmp_path / "out", jobs=2, cache_dir=tmp_path / "cache")
    peer = [c for c in result.cells if c.design == "peer"]
    assert len(peer) == 2 and not any(c.error for c in result.cells)
    for c in peer:
        point = c.points[0]
        assert point.episodes and {e["seed"] for e in point.episodes} == {0, 1}
        assert c.peer["costs"]["llc"]["forward_backward_examples"] == 4 * 100 * 32 / 12
        assert c.peer["costs"]["probes:8"]["forward_examples"] == 8
    series = list((tmp_path / "cache").glob("*/*.peers/llc-*.json"))
    assert len(series) == 4  # deep-linear and its null, two seeds
    llc = json.loads(series[0].read_text())["series"]
    assert llc["stride"] == 12 and len(llc["llc"]) == len(llc["records"]) and np.isfinite(llc["llc"]).all()
    _, md = write_report(result, tmp_path / "out", "test")
    text = md.read_text()
    assert "## Peers" in text and "| LLC change |" in text and "Where a peer wins" in text
    figures = write_figures(result, tmp_path / "out", cache_dir=tmp_path / "cache")
    assert any(p.name == "peers-deep-linear.png" for p in figures)
    # the peer cells again, from the cached LLC series: no SGLD runs, the same scores
    for path in (tmp_path / "out" / "cells").glob("*/*__peer__*.json"):
        path.unlink()

    def no_sampling(*args, **kwargs):
        raise AssertionError("the LLC series should come from the cache")

    monkeypatch.setattr("probekit.eval.peers.llc.estimate_llc", no_sampling)
    again = run_grid(grid, tmp_path / "out", jobs=1, cache_dir=tmp_path / "cache")
    assert again.computed == 2
    for a, b in zip([c for c in again.cells if c.design == "peer"], peer):
        assert a.error is None and a.points == b.points
