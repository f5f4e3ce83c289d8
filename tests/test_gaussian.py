"""The Gaussian 2RDM against a plain loop over draws.

The reference copies each draw's weights into a deepcopy of the model and calls
it normally, one draw at a time: no functional_call, no vmap. Only the noise is
shared (``gaussian_draws``); its own properties are tested separately.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from probekit.errors import ProbekitUsageError, ProbekitWarning
from probekit.rdm import window_stats
from probekit.rdm.gaussian import gaussian_draws, gaussian_loss_matrix, gaussian_rdm

N_PROBES, N_IN, N_CLASSES = 12, 5, 3


def ce(outputs, targets):
    return F.cross_entropy(outputs, targets, reduction="none")


def make_mlp(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(N_IN, 8), nn.Tanh(), nn.Linear(8, N_CLASSES)).to(dtype)


def make_bn(dtype=torch.float32, seed=0):
    """A model with buffers: BatchNorm with non-trivial running statistics, in eval mode."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(N_IN, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, N_CLASSES))
    model = model.to(dtype)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, N_IN, dtype=dtype) * 2 + 1)  # train mode: sets running stats
    return model.eval()


class TwoInputs(nn.Module):
    """Takes a tuple of inputs, passed positionally."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(N_IN, N_CLASSES)
        self.b = nn.Linear(2, N_CLASSES)

    def forward(self, x, z):
        return self.a(x) * torch.sigmoid(self.b(z))


def make_two(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return TwoInputs().to(dtype)


def batch(dtype=torch.float32, two=False, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_PROBES, N_IN, generator=g, dtype=dtype)
    y = torch.randint(0, N_CLASSES, (N_PROBES,), generator=g)
    if two:
        return (x, torch.randn(N_PROBES, 2, generator=g, dtype=dtype)), y
    return x, y


def loop_matrix(model, inputs, targets, loss_fn, offsets):
    """[K, n] losses: copy theta + offset into a deepcopy, call it, one draw at a time."""
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    ref = copy.deepcopy(model)
    named = dict(ref.named_parameters())
    theta = {k: named[k].detach().clone() for k in offsets}
    n_draws = len(next(iter(offsets.values())))
    rows = []
    with torch.no_grad():
        for i in range(n_draws):
            for k, d in offsets.items():
                named[k].copy_(theta[k] + d[i])
            rows.append(loss_fn(ref(*args), targets).to(torch.float64).numpy())
    return np.stack(rows)


MAKERS = {"mlp": make_mlp, "bn": make_bn, "two": make_two}
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_matrix_equals_plain_loop(kind, dtype):
    model = MAKERS[kind](dtype)
    x, y = batch(dtype, two=kind == "two")
    kw = dict(sigma=1e-2, n_draws=7, seed=3)
    got = gaussian_loss_matrix(model, x, y, ce, chunk_size=3, **kw)
    expected = loop_matrix(model, x, y, ce, gaussian_draws(model, **kw))
    assert got.shape == (7, N_PROBES) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=TOL[dtype], atol=0)


def test_rdm_equals_window_stats_of_loop():
    model = make_bn(torch.float64)
    x, y = batch(torch.float64)
    kw = dict(sigma=1e-2, n_draws=10, seed=5)
    got = gaussian_rdm(model, x, y, ce, top_k=2, **kw)
    loop = loop_matrix(model, x, y, ce, gaussian_draws(model, **kw))
    expected = window_stats(loop, top_k=2)
    for name in ("shc", "pr", "trace", "frobenius_sq"):
        np.testing.assert_allclose(getattr(got, name), getattr(expected, name), rtol=1e-8)
    np.testing.assert_allclose(got.spectrum, expected.spectrum, rtol=1e-8, atol=1e-20)
    np.testing.assert_allclose(got.eigenvalues, expected.eigenvalues, rtol=1e-8)
    np.testing.assert_allclose(got.loadings, expected.loadings, rtol=1e-6, atol=1e-9)
    assert got.window == 10 and got.n_probes == N_PROBES
    np.testing.assert_allclose(got.extras["mean_loss"], loop.mean(), rtol=1e-12)
    center = ce(model(x), y).mean().item()
    np.testing.assert_allclose(got.extras["center_loss"], center, rtol=1e-12)
    assert got.extras["sigma"] == 1e-2 and got.extras["n_draws"] == 10
    assert got.extras["params"] == tuple(k for k, _ in model.named_parameters())


def test_include_center_prepends_unperturbed_losses():
    model = make_mlp(torch.float64)
    x, y = batch(torch.float64)
    got = gaussian_loss_matrix(model, x, y, ce, n_draws=4, include_center=True)
    expected = ce(model(x), y).detach().numpy()
    assert got.shape == (5, N_PROBES)
    np.testing.assert_allclose(got[0], expected, rtol=1e-13)
    np.testing.assert_array_equal(got[1:], gaussian_loss_matrix(model, x, y, ce, n_draws=4))


def test_seed_determinism_and_chunk_invariance():
    model = make_mlp(torch.float64)
    x, y = batch(torch.float64)
    base = gaussian_loss_matrix(model, x, y, ce, n_draws=9, seed=11)
    np.testing.assert_array_equal(base, gaussian_loss_matrix(model, x, y, ce, n_draws=9, seed=11))
    assert not np.allclose(base, gaussian_loss_matrix(model, x, y, ce, n_draws=9, seed=12))
    for chunk in (1, 2, 4, 9, 50):
        got = gaussian_loss_matrix(model, x, y, ce, n_draws=9, seed=11, chunk_size=chunk)
        np.testing.assert_allclose(got, base, rtol=1e-13, atol=0)


def test_draws_depend_only_on_seed_and_index():
    model = make_mlp()
    short = gaussian_draws(model, n_draws=3, seed=2)
    long = gaussian_draws(model, n_draws=8, seed=2)
    for k in short:
        torch.testing.assert_close(short[k], long[k][:3], rtol=0, atol=0)
    # seed s draw k+1 must not be seed s+1 draw k (naive seed + k mixing would do that)
    nxt = gaussian_draws(model, n_draws=2, seed=3)
    assert not torch.equal(long["0.weight"][1], nxt["0.weight"][0])
    # noise has the parameter's shape and dtype, and is ~ N(0, sigma^2)
    d = gaussian_draws(model, sigma=0.5, n_draws=400, seed=0)["0.weight"]
    assert d.shape == (400, 8, N_IN) and d.dtype == torch.float32
    assert abs(d.std().item() - 0.5) < 0.02 and abs(d.mean().item()) < 0.02


def test_relative_scales_by_tensor_rms():
    model = make_mlp(torch.float64)
    absolute = gaussian_draws(model, sigma=1e-2, n_draws=3)
    relative = gaussian_draws(model, sigma=1e-2, n_draws=3, relative=True)
    for name, p in model.named_parameters():
        rms = p.detach().pow(2).mean().sqrt()
        torch.testing.assert_close(relative[name], absolute[name] * rms, rtol=1e-12, atol=0)


def test_relative_warns_about_all_zero_tensors():
    model = make_mlp(torch.float64)
    with torch.no_grad():
        model[2].bias.zero_()
    with pytest.warns(ProbekitWarning, match=r"unperturbed: 2\.bias") as rec:
        d = gaussian_draws(model, n_draws=2, relative=True)
    assert torch.count_nonzero(d["2.bias"]) == 0
    assert rec[0].filename == __file__  # the warning points at the caller
    x, y = batch(torch.float64)
    with pytest.warns(ProbekitWarning, match=r"unperturbed: 2\.bias") as rec:
        gaussian_rdm(model, x, y, ce, n_draws=3, relative=True)
    assert rec[0].filename == __file__


def test_params_subset_perturbs_only_those():
    model = make_mlp(torch.float64)
    x, y = batch(torch.float64)
    kw = dict(sigma=1e-2, n_draws=5, seed=1)
    offsets = gaussian_draws(model, params=["2.bias", "0.weight"], **kw)
    assert list(offsets) == ["0.weight", "2.bias"]  # model order, whatever the list order
    got = gaussian_loss_matrix(model, x, y, ce, params=["2.bias", "0.weight"], **kw)
    # The loop perturbs exactly the named tensors and leaves the rest at theta.
    np.testing.assert_allclose(got, loop_matrix(model, x, y, ce, offsets), rtol=1e-12)


def test_frozen_parameters_are_not_perturbed_by_default():
    model = make_mlp()
    model[0].weight.requires_grad_(False)
    assert "0.weight" not in gaussian_draws(model, n_draws=2)
    assert "0.weight" in gaussian_draws(model, n_draws=2, params=["0.weight"])


@pytest.mark.parametrize("kind", ["mlp", "bn"])
def test_model_is_unchanged(kind):
    model = MAKERS[kind](torch.float32)
    before = copy.deepcopy(model.state_dict())
    x, y = batch()
    gaussian_rdm(model, x, y, ce, sigma=0.1, n_draws=6, chunk_size=4)
    after = model.state_dict()
    for k in before:
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=0)
    assert model.training == (kind == "mlp")  # the caller's mode is left alone


def test_shc_scales_as_sigma_to_the_fourth():
    # C ~ sigma^2 J J^T for small sigma, so SHC (a variance of eigenvalues) ~ sigma^4.
    model = make_mlp(torch.float64)
    x, y = batch(torch.float64)
    s1 = gaussian_rdm(model, x, y, ce, sigma=1e-4, n_draws=16).shc
    s2 = gaussian_rdm(model, x, y, ce, sigma=2e-4, n_draws=16).shc
    assert s1 > 0
    assert abs(s2 / s1 / 16 - 1) < 0.1


# --- errors -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sigma=0.0), r"'sigma' parameter of gaussian_rdm must be a float in the range \(0"),
        (dict(sigma=-1e-3), r"'sigma' parameter"),
        (dict(sigma=float("nan")), r"'sigma' parameter"),
        (dict(n_draws=1), r"'n_draws' parameter of gaussian_rdm must be an int in the range \[2"),
        (dict(n_draws=4.0), r"'n_draws' parameter"),
        (dict(seed=-1), r"'seed' parameter"),
        (dict(chunk_size=0), r"'chunk_size' parameter of gaussian_rdm must be None or an int"),
        (dict(relative=1), r"'relative' parameter"),
        (dict(top_k=-1), r"'top_k' parameter of gaussian_rdm"),
        (dict(loadings="yes"), r"'loadings' parameter"),
        (dict(params="0.weight"), r"'params' parameter of gaussian_rdm must be None or a list"),
        (dict(params=[]), r"must name at least one parameter"),
        (dict(params=["0.weight", "nope"]), r"unknown parameter name\(s\) 'nope'. Available: 0\.weight, 0\.bias"),
    ],
)
def test_bad_parameters(kwargs, match):
    x, y = batch()
    with pytest.raises(ProbekitUsageError, match=match):
        gaussian_rdm(make_mlp(), x, y, ce, **kwargs)


def test_bad_include_center_and_model():
    x, y = batch()
    with pytest.raises(ProbekitUsageError, match=r"'include_center' parameter"):
        gaussian_loss_matrix(make_mlp(), x, y, ce, include_center=None)
    with pytest.raises(ProbekitUsageError, match=r"'model' parameter of gaussian_draws must be an instance of Module"):
        gaussian_draws(lambda t: t)


def test_no_trainable_parameters():
    model = make_mlp().requires_grad_(False)
    x, y = batch()
    with pytest.raises(ProbekitUsageError, match="no parameters with requires_grad"):
        gaussian_loss_matrix(model, x, y, ce)


@pytest.mark.parametrize("inputs", [None, [], ("a",), torch.tensor(1.0), torch.zeros(0, N_IN)])
def test_bad_inputs(inputs):
    _, y = batch()
    with pytest.raises(ProbekitUsageError, match=r"'inputs' parameter of gaussian_loss_matrix must be a tensor"):
        gaussian_loss_matrix(make_mlp(), inputs, y, ce)


def test_bad_loss_fn():
    x, y = batch()
    with pytest.raises(ProbekitUsageError, match=r"'loss_fn' parameter .* must be a callable"):
        gaussian_loss_matrix(make_mlp(), x, y, "cross_entropy")
    with pytest.raises(ProbekitUsageError, match=r"shape \(12,\).*returned shape \(\)"):
        gaussian_loss_matrix(make_mlp(), x, y, F.cross_entropy)  # reduced: a scalar
    with pytest.raises(ProbekitUsageError, match=r"returned shape \(6,\)"):
        gaussian_loss_matrix(make_mlp(), x, y, lambda o, t: ce(o, t)[:6])
    with pytest.raises(ProbekitUsageError, match=r"returned a list"):
        gaussian_loss_matrix(make_mlp(), x, y, lambda o, t: ce(o, t).tolist())


def test_train_mode_dropout_and_batchnorm_ask_for_eval():
    x, y = batch()
    torch.manual_seed(0)
    dropout = nn.Sequential(nn.Linear(N_IN, 8), nn.Dropout(0.5), nn.Linear(8, N_CLASSES))
    with pytest.raises(ProbekitUsageError, match=r"vmap \(.*\); the model is in train mode: call model\.eval\(\)"):
        gaussian_rdm(dropout, x, y, ce, n_draws=3)
    bn = make_bn().train()
    before = copy.deepcopy(bn.state_dict())
    with pytest.raises(ProbekitUsageError, match=r"call model\.eval\(\) first"):
        gaussian_rdm(bn, x, y, ce, n_draws=3)
    for k, v in before.items():  # running stats untouched, even by the center pass
        torch.testing.assert_close(bn.state_dict()[k], v, rtol=0, atol=0)
    assert np.isfinite(gaussian_rdm(dropout.eval(), x, y, ce, n_draws=3).shc)


class DataDependent(nn.Linear):
    def forward(self, x):
        out = super().forward(x)
        return out if out.sum().item() > -1e9 else -out  # .item(): not vmap-compatible


def test_vmap_incompatible_model_in_eval_mode():
    x, y = batch()
    model = DataDependent(N_IN, N_CLASSES).eval()
    with pytest.raises(ProbekitUsageError, match=r"must be vmap-compatible \(no \.item\(\)"):
        gaussian_loss_matrix(model, x, y, ce, n_draws=2)


def test_non_finite_losses():
    x, y = batch()
    with pytest.raises(ProbekitUsageError, match=r"gaussian_rdm got 36 NaN or inf losses over 3 draws; lower sigma"):
        gaussian_rdm(make_mlp(), x, y, lambda o, t: ce(o, t) / 0.0, n_draws=3)
