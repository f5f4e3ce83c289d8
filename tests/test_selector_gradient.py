"""Gradient diversity: sketches against a plain backward loop, orderings against brute force.

The references share nothing with the code under test but the random matrices
(``projection_matrix``, ``badge_projection_matrix``, whose own properties are
tested here too): per-sample gradients come from ``loss.backward()`` on one
example at a time, farthest-first from a full pairwise-distance matrix.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import probekit.selection.grad_sketch as gs
from probekit.errors import ProbekitUsageError
from probekit.selection.grad_sketch import (
    badge_projection_matrix,
    gradient_sketches,
    per_sample_gradients,
    projection_matrix,
)
from probekit.pool import Pool
from probekit.selectors.gradient import GradientSelector, default_model, farthest_first, kmeans_pp
from probekit.selectors.random_sampling import RandomSelector

N, N_IN, N_CLASSES = 13, 5, 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ce(outputs, targets):
    return F.cross_entropy(outputs, targets, reduction="none")


def make_mlp(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(N_IN, 8), nn.Tanh(), nn.Linear(8, N_CLASSES)).to(dtype)


def make_bn(seed=0):
    """Buffers with non-trivial running statistics, in eval mode."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(N_IN, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, N_CLASSES))
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, N_IN) * 2 + 1)
    return model.eval()


class PerPosition(nn.Module):
    """A head applied at every position of a sequence, then mean-pooled: a sum of outer products."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(N_IN, 6)
        self.head = nn.Linear(6, N_CLASSES, bias=False)

    def forward(self, x):  # x: [B, T, N_IN]
        return self.head(torch.tanh(self.body(x))).mean(1)


def data(seed=0, shape=(N, N_IN)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g), torch.randint(0, N_CLASSES, (shape[0],), generator=g)


def loop_gradients(model, x, y, names=None):
    """Expected per-sample gradients: one example, one loss.backward(), at a time."""
    out = []
    for i in range(len(x)):
        model.zero_grad()
        ce(model(x[i : i + 1]), y[i : i + 1]).sum().backward()
        out.append({k: p.grad.clone() for k, p in model.named_parameters() if names is None or k in names})
    model.zero_grad(set_to_none=True)
    return out


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, model.training


# -- conformance ------------------------------------------------------------------------
# -- per-sample gradients and projections ---------------------------------------------------
@pytest.mark.parametrize("make", [make_mlp, make_bn], ids=["mlp", "batchnorm-eval"])
def test_vmap_gradients_equal_backward_loop(make):
    model = make()
    x, y = data()
    got = per_sample_gradients(model, x, y, ce)
    expected = loop_gradients(model, x, y)
    assert set(got) == set(expected[0])
    for name, g in got.items():
        assert g.shape == (N, *expected[0][name].shape)
        torch.testing.assert_close(g, torch.stack([e[name] for e in expected]), rtol=1e-5, atol=1e-6)


def test_sketches_are_loop_gradients_times_projection_matrix():
    model = make_mlp(dtype=torch.float64)
    x, y = data()
    x = x.double()
    r = projection_matrix(model, dim=40, seed=3)
    expected = np.stack([sum((g[k].reshape(-1) @ r[k]).numpy() for k in g) for g in loop_gradients(model, x, y)])
    got = gradient_sketches(model, x, y, ce, dim=40, seed=3, batch_size=4)
    assert got.dtype == np.float32 and got.shape == (N, 40)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_params_subset_uses_the_same_rows_of_the_matrix():
    model = make_mlp()
    x, y = data()
    names = ["2.weight", "2.bias"]
    r = projection_matrix(model, dim=16, params=names)
    assert set(r) == set(names)
    full = projection_matrix(model, dim=16)
    torch.testing.assert_close(r["2.weight"], full["2.weight"])  # drawn per tensor, by name
    expected = np.stack([sum((g[k].reshape(-1) @ r[k]).numpy() for k in g)
                         for g in loop_gradients(model, x, y, names)])
    got = gradient_sketches(model, x, y, ce, dim=16, params=names)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_projection_matrix_is_seeded_and_scaled():
    model = make_mlp()
    a, b, c = (projection_matrix(model, dim=64, seed=s)["0.weight"] for s in (0, 0, 1))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    # N(0, 1/dim) entries: E ||R^T v||^2 = ||v||^2.
    big = projection_matrix(nn.Linear(400, 50), dim=64, seed=0)["weight"]  # [20000, 64]
    assert abs(float(big.var()) * 64 - 1.0) < 0.02 and abs(float(big.mean())) < 0.01


def test_batching_and_chunking_do_not_change_sketches(monkeypatch):
    model = make_mlp()
    x, y = data(shape=(37, N_IN))
    expected = gradient_sketches(model, x, y, ce, dim=24, batch_size=37)  # one batch, R cached
    seen = []
    original = gs._Projector.__call__

    def spy(self, grads):
        seen.append(max(g.shape[0] for g in grads.values()))
        out = original(self, grads)
        seen_rows.append(self.max_chunk_rows)
        return out

    seen_rows = []
    monkeypatch.setattr(gs._Projector, "__call__", spy)
    monkeypatch.setattr(gs, "_CACHE_BYTES", 0)  # never cache: R re-drawn per batch
    monkeypatch.setattr(gs, "_ROWS_PER_CHUNK", 7)  # in blocks of 7 rows
    got = gradient_sketches(model, x, y, ce, dim=24, batch_size=5)
    # Per-sample gradients are only ever held for one batch, R for one block of rows.
    assert max(seen) <= 5 and len(seen) == 8 and max(seen_rows) <= 7
    # The chunked draw is a different matrix (the chunk seeds changed), so compare with
    # the whole matrix at the same chunking, then batching against one batch.
    r = projection_matrix(model, dim=24)
    expected_chunked = np.stack([sum((g[k].reshape(-1) @ r[k]).numpy() for k in g)
                                 for g in loop_gradients(model, x, y)])
    np.testing.assert_allclose(got, expected_chunked, rtol=1e-4, atol=1e-6)
    monkeypatch.undo()
    batched = gradient_sketches(model, x, y, ce, dim=24, batch_size=5)
    np.testing.assert_allclose(batched, expected, rtol=1e-5, atol=1e-6)


# -- BADGE -----------------------------------------------------------------------------------
def test_badge_equals_the_explicit_outer_product_gradient():
    model = make_mlp(dtype=torch.float64)
    x, y = data()
    x = x.double()
    head = model[2]
    m = badge_projection_matrix(model, dim=32, seed=5)
    expected, formula = [], []
    h = torch.tanh(model[0](x)).detach()
    p = torch.softmax(model(x), 1).detach()
    for i, g in enumerate(loop_gradients(model, x, y)):
        explicit = torch.cat([g["2.weight"], g["2.bias"][:, None]], 1)  # [C, H + 1]
        expected.append((explicit.reshape(-1) @ m).numpy())
        # and the loop's gradient is the BADGE outer product (softmax - onehot) x [h, 1]
        err = p[i] - F.one_hot(y[i], N_CLASSES)
        formula.append(torch.outer(err, torch.cat([h[i], torch.ones(1, dtype=h.dtype)])))
        torch.testing.assert_close(explicit, formula[-1])
    got = gradient_sketches(model, x, y, ce, dim=32, seed=5, method="badge", batch_size=4)
    assert head.weight.grad is None
    np.testing.assert_allclose(got, np.stack(expected), rtol=1e-5, atol=1e-6)


def test_badge_on_a_sequence_head_sums_the_outer_products():
    torch.manual_seed(1)
    model = PerPosition().double()
    x, y = data(shape=(9, 4, N_IN))
    x = x.double()
    m = badge_projection_matrix(model, dim=20, seed=2, layer="head")
    assert m.shape == (N_CLASSES * 6, 20)  # no bias: W only
    expected = np.stack([(g["head.weight"].reshape(-1) @ m).numpy() for g in loop_gradients(model, x, y)])
    got = gradient_sketches(model, x, y, ce, dim=20, seed=2, method="badge", layer="head")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_badge_matrix_preserves_inner_products_in_expectation():
    # Khatri-Rao columns a_d (x) b_d: E[M M^T] = I. Average over seeds: the diagonal -> 1.
    model = nn.Linear(3, 2)
    mats = [badge_projection_matrix(model, dim=256, seed=s) for s in range(100)]
    mm = sum(m @ m.T for m in mats) / len(mats)  # diagonal std ~ sqrt(8 / 25600) = 0.018
    np.testing.assert_allclose(mm.detach().numpy(), np.eye(8), atol=0.1)


@pytest.mark.parametrize("method", ["projection", "badge"])
def test_model_is_left_unchanged(method):
    model = make_bn()
    model.train(False)
    before, mode = snapshot(model)
    x, y = data()
    gradient_sketches(model, x, y, ce, dim=8, method=method, batch_size=5)
    after, mode_after = snapshot(model)
    assert mode_after == mode
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert not model._forward_hooks and not model[3]._forward_hooks  # the BADGE hook is removed


# -- orderings -----------------------------------------------------------------------------
def brute_farthest_first(x, n, start):
    """Expected: the full N x N distance matrix, max over the rest of the min over the taken."""
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    order = [start]
    while len(order) < n:
        rest = [i for i in range(len(x)) if i not in order]
        cover = d[np.ix_(rest, order)].min(1)
        order.append(rest[int(np.argmax(cover))])
    return np.array(order), np.r_[np.linalg.norm(x[start]), [d[order[k], order[:k]].min() for k in range(1, n)]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_farthest_first_equals_brute_force(seed):
    x = np.random.default_rng(seed).normal(size=(60, 7))
    start = seed * 11
    order, score = farthest_first(x, 25, start)
    expected_order, expected_score = brute_farthest_first(x, 25, start)
    np.testing.assert_array_equal(order, expected_order)
    np.testing.assert_allclose(score, expected_score, rtol=1e-9)
    assert np.all(np.diff(score[1:]) <= 1e-12)  # farthest-first radii never grow


def test_farthest_first_on_duplicates_never_repeats():
    x = np.zeros((6, 3))
    x[0] = 1.0
    order, score = farthest_first(x, 6, 0)
    assert sorted(order) == list(range(6)) and score[2:].max() == 0.0


def test_kmeans_pp_draws_proportional_to_squared_distance():
    x = np.array([[0.0], [1.0], [3.0]])
    # From 0, the second probe is 1 with p = 1/10 and 2 with p = 9/10.
    second = [kmeans_pp(x, 2, 0, np.random.default_rng(s))[0][1] for s in range(2000)]
    assert abs(np.mean(np.array(second) == 1) - 0.1) < 0.025
    order, score = kmeans_pp(np.zeros((4, 2)), 4, 1, np.random.default_rng(0))  # all duplicates
    assert sorted(order) == [0, 1, 2, 3] and order[0] == 1 and score.max() == 0.0


def test_kmeans_pp_prefixes_are_nested():
    x = np.random.default_rng(0).normal(size=(50, 4))
    full, _ = kmeans_pp(x, 30, 3, np.random.default_rng(9))
    for m in (1, 7, 29):
        np.testing.assert_array_equal(kmeans_pp(x, m, 3, np.random.default_rng(9))[0], full[:m])


# -- the selector ------------------------------------------------------------------------------
def imbalanced_pool(size=300, seed=0):
    """Six classes with shares 70/12/8/5/3/2 %, embeddings in overlapping blobs per class."""
    rng = np.random.default_rng(seed)
    shares = np.array([70, 12, 8, 5, 3, 2]) / 100
    labels = rng.choice(6, size=size, p=shares)
    centers = rng.normal(size=(6, 12))
    emb = centers[labels] * 0.5 + rng.normal(size=(size, 12))
    return Pool.from_dict({"id": [f"r{i:04d}" for i in range(size)], "embedding": emb.astype(np.float32).tolist(),
                           "label": labels.tolist()}, id_field="id")


def distinct_labels(selector, pool, seeds, n=10):
    label = dict(zip(pool.ids, pool.column("label")))
    return np.mean([len({label[i] for i in selector.select(pool, n, seed=s).ids}) for s in seeds])


@pytest.mark.parametrize("params, margin", [({}, 2.0), ({"ordering": "kmeans++"}, 0.5), ({"method": "badge"}, 1.5)],
                         ids=["kcenter", "kmeans++", "badge"])
def test_gradient_diversity_covers_classes_better_than_random(params, margin):
    # Distinct labels among the first 10 probes, mean over 8 seeds (6 classes; random gets ~3).
    # kmeans++ samples, so it gains less than farthest-first (measured 4.0 and 5.75 vs 3.0).
    pool = imbalanced_pool()
    seeds = range(8)
    ours = distinct_labels(GradientSelector(sketch_dim=64, hidden=32, **params), pool, seeds)
    random = distinct_labels(RandomSelector(), pool, seeds)
    assert ours >= random + margin, (ours, random)


def test_provenance_and_scores(pool):
    ps = GradientSelector(sketch_dim=32, hidden=16).select(pool, 12, seed=4)
    info = ps.provenance.info
    assert info["sketch"] == "projection" and info["sketch_dim"] == 32 and info["ordering"] == "kcenter"
    assert info["n_params"] == 16 * 16 + 16 + 16 * 2 + 2 == info["n_sketched"]
    assert info["checkpoint"] == "default-init MLP(16-16-2), seed 4"
    s = np.asarray(ps.scores)
    assert np.all(np.diff(s[1:]) <= 1e-9) and np.all(s > 0)
    badge = GradientSelector(sketch_dim=32, hidden=16, method="badge").select(pool, 3).provenance.info
    assert badge["sketch"] == "badge" and badge["n_sketched"] == 2 * 16 + 2


def test_checkpoint_parameters_without_a_checkpoint_are_refused(pool):
    for params in ({"device": "cuda:7"}, {"tokenizer": "/nonexistent"}, {"max_length": 8}):
        with pytest.raises(ProbekitUsageError, match=f"'{next(iter(params))}' parameter .* applies with checkpoint"):
            GradientSelector(sketch_dim=8, hidden=4, **params).select(pool, 2)


def test_auto_method_by_size(pool, monkeypatch):
    """``method="auto"``: the dense projection up to AUTO_FACTORIZED trainable parameters, factorized above."""
    import probekit.selectors.gradient as gradient

    small = GradientSelector(sketch_dim=32, hidden=16).select(pool, 6, seed=1)
    assert small.provenance.info["sketch"] == "projection"  # 306 parameters
    monkeypatch.setattr(gradient, "AUTO_FACTORIZED", 305)
    big = GradientSelector(sketch_dim=32, hidden=16, factor_dim=4).select(pool, 6, seed=1).provenance.info
    assert big["sketch"] == "factorized" and big["factor_dim"] == 4 and big["n_sketched"] == 306
    forced = GradientSelector(sketch_dim=32, hidden=16, method="factorized").select(pool, 6, seed=1).provenance.info
    assert forced["sketch"] == "factorized" and forced["factor_dim"] == 32


class TokenClassifier(nn.Module):
    """A user model on integer token inputs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(20, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, tokens):
        return self.head(self.emb(tokens).mean(1))


def square_error(outputs, targets):
    return ((outputs[:, 0] - targets) ** 2)


def test_user_model_token_inputs_and_callable_loss():
    rng = np.random.default_rng(0)
    pool = Pool.from_dict({"id": [f"t{i}" for i in range(40)], "tokens": rng.integers(0, 20, (40, 5)).tolist(),
                           "label": rng.choice(["neg", "pos"], 40).tolist(), "y": rng.normal(size=40).tolist()},
                          id_field="id")
    model = TokenClassifier().eval()
    before, _ = snapshot(model)
    ps = GradientSelector(model=model, input_field="tokens", sketch_dim=16).select(pool, 10)
    assert ps.provenance.info["checkpoint"] == "TokenClassifier" and len(ps) == 10
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    sel = GradientSelector(model=model, input_field="tokens", target_field="y", loss=square_error, sketch_dim=16)
    assert len(pickle.loads(pickle.dumps(sel)).select(pool, 5)) == 5  # module-level loss: pickles
    mse = GradientSelector(input_field="tokens", target_field="y", loss="mse", sketch_dim=16).select(pool, 5)
    assert mse.provenance.info["checkpoint"] == "default-init MLP(5-64-1), seed 0"


def test_default_model_is_seeded_without_touching_the_global_rng():
    state = torch.get_rng_state()
    a, b, c = default_model(4, 8, 3, 0), default_model(4, 8, 3, 0), default_model(4, 8, 3, 1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a[0].weight, b[0].weight) and not torch.equal(a[0].weight, c[0].weight)
    assert float(a[0].weight.detach().abs().max()) <= 0.5  # 1 / sqrt(fan_in)


# -- errors --------------------------------------------------------------------------------
def test_selector_errors(pool):
    with pytest.raises(ProbekitUsageError, match="'target_field' parameter of GradientSelector names column 'nope'"):
        GradientSelector(target_field="nope").select(pool, 3)
    with pytest.raises(ProbekitUsageError, match="'input_field' parameter of GradientSelector names column 'nope'"):
        GradientSelector(input_field="nope").select(pool, 3)
    with pytest.raises(ProbekitUsageError, match="do not apply with input_field='embedding'"):
        GradientSelector(input_field="embedding", text_field="text").select(pool, 3)
    with pytest.raises(ProbekitUsageError, match="'sketch_dim' parameter of GradientSelector.* range \\[1, 65536\\]"):
        GradientSelector(sketch_dim=0).select(pool, 3)
    with pytest.raises(ProbekitUsageError, match="'loss' parameter of GradientSelector must be one of"):
        GradientSelector(loss="hinge").select(pool, 3)
    with pytest.raises(ProbekitUsageError, match="'model' parameter .* an instance of Module"):
        GradientSelector(model="mlp").select(pool, 3)


def target_pool(values):
    return Pool.from_dict({"id": [f"v{i}" for i in range(len(values))], "embedding": np.eye(len(values)).tolist(),
                           "label": values}, id_field="id")


def test_target_errors():
    with pytest.raises(ProbekitUsageError, match="cross_entropy' needs one class label per row; target column 'label' holds lists"):
        GradientSelector().select(target_pool([[1.0, 2.0]] * 4), 2)
    with pytest.raises(ProbekitUsageError, match="target column 'label' has missing values"):
        GradientSelector().select(target_pool(["a", None, "b", "a"]), 2)
    with pytest.raises(ProbekitUsageError, match="'mse' needs numeric targets; target column 'label' holds str"):
        GradientSelector(loss="mse").select(target_pool(["a", "b", "b", "a"]), 2)
    with pytest.raises(ProbekitUsageError, match="target column 'label' has missing, NaN or inf values"):
        GradientSelector().select(target_pool([1.0, float("nan"), 0.0, 1.0]), 2)
    with pytest.raises(ProbekitUsageError, match="holds non-integer numbers \\(use loss='mse'\\)"):
        GradientSelector().select(target_pool([0.5, 1.0, 0.0, 1.0]), 2)
    with pytest.raises(ProbekitUsageError, match="target column 'label' has NaN or inf values"):
        GradientSelector(loss="mse").select(target_pool([[1.0, float("inf")]] * 4), 2)
    pool = Pool.from_dict({"id": ["a", "b"], "x": [[1.0, float("nan")], [0.0, 1.0]], "label": [0, 1]}, id_field="id")
    with pytest.raises(ProbekitUsageError, match="input column 'x' has NaN or inf values"):
        GradientSelector(input_field="x").select(pool, 1)
    # labels that are not indices are numbered; one class still gives 2 outputs
    info = GradientSelector().select(target_pool(["b", "b", "b"]), 2).provenance.info
    assert info["checkpoint"].startswith("default-init MLP(3-64-2)")


def test_sketch_errors():
    model = make_mlp()
    x, y = data()
    with pytest.raises(ProbekitUsageError, match="'loss_fn' parameter of gradient_sketches must be a callable"):
        gradient_sketches(model, x, y, "ce")
    with pytest.raises(ProbekitUsageError, match="'inputs' parameter of gradient_sketches must be a tensor"):
        gradient_sketches(model, x[:0], y, ce)
    with pytest.raises(ProbekitUsageError, match="'targets' parameter of gradient_sketches must be a tensor with one row per example \\(13\\)"):
        gradient_sketches(model, x, y[:3], ce)
    with pytest.raises(ProbekitUsageError, match="loss_fn must return a tensor of per-sample losses of shape \\(13,\\)"):
        gradient_sketches(model, x, y, lambda o, t: F.cross_entropy(o, t), batch_size=100)
    with pytest.raises(ProbekitUsageError, match="loss_fn must return a tensor of per-sample losses of shape \\(13,\\)"):
        gradient_sketches(model, x, y, lambda o, t: F.cross_entropy(o, t), method="badge", batch_size=100)
    with pytest.raises(ProbekitUsageError, match="'method' parameter of gradient_sketches must be one of"):
        gradient_sketches(model, x, y, ce, method="trak")
    with pytest.raises(ProbekitUsageError, match="'params' parameter of gradient_sketches applies to method='projection'"):
        gradient_sketches(model, x, y, ce, method="badge", params=["2.weight"])
    with pytest.raises(ProbekitUsageError, match="'layer' parameter of gradient_sketches applies to method='badge'"):
        gradient_sketches(model, x, y, ce, layer="2")
    with pytest.raises(ProbekitUsageError, match="'layer' parameter of gradient_sketches must name an nn.Linear module.*linear layers: 0, 2"):
        gradient_sketches(model, x, y, ce, method="badge", layer="1")
    with pytest.raises(ProbekitUsageError, match="unknown parameter name\\(s\\) 'w'. Available: 0.weight"):
        gradient_sketches(model, x, y, ce, params=["w"])
    with pytest.raises(ProbekitUsageError, match="'loss_fn' parameter of per_sample_gradients must be a callable"):
        per_sample_gradients(model, x, y, None)
    with pytest.raises(ProbekitUsageError, match="'model' parameter of per_sample_gradients must be an instance of Module"):
        per_sample_gradients("model", x, y, ce)
    with pytest.raises(ProbekitUsageError, match="'dim' parameter of projection_matrix must be an int in the range \\[1, inf\\)"):
        projection_matrix(model, dim=0)
    with pytest.raises(ProbekitUsageError, match="'seed' parameter of badge_projection_matrix must be an int"):
        badge_projection_matrix(model, seed=-1)
    with pytest.raises(ProbekitUsageError, match="'params' parameter of per_sample_gradients must name at least one parameter"):
        per_sample_gradients(model, x, y, ce, params=[])
    with pytest.raises(ProbekitUsageError, match="'params' parameter of per_sample_gradients must be None or a list of parameter names"):
        per_sample_gradients(model, x, y, ce, params="0.weight")
    frozen = make_mlp().requires_grad_(False)
    with pytest.raises(ProbekitUsageError, match="found no parameters with requires_grad"):
        gradient_sketches(frozen, x, y, ce)
    conv = nn.Sequential(nn.Flatten(), nn.Identity())
    with pytest.raises(ProbekitUsageError, match="method='badge' needs an nn.Linear layer.*Sequential has none"):
        gradient_sketches(conv, x, y, ce, method="badge")


class TwiceHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(N_IN, N_IN)

    def forward(self, x):
        return self.head(self.head(x))[:, :N_CLASSES]


def test_model_errors():
    x, y = data()
    with pytest.raises(ProbekitUsageError, match="needs the layer to run once per forward pass; it ran 2 times"):
        gradient_sketches(TwiceHead(), x, y, ce, method="badge")
    dropout = nn.Sequential(nn.Linear(N_IN, 8), nn.Dropout(0.5), nn.Linear(8, N_CLASSES)).train()
    with pytest.raises(ProbekitUsageError, match="train mode: call model.eval\\(\\) first"):
        gradient_sketches(dropout, x, y, ce)

    class ItemModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(N_IN, N_CLASSES)

        def forward(self, x):
            return self.lin(x) * float(x.sum().item() > 0)

    with pytest.raises(ProbekitUsageError, match="must be vmap-compatible"):
        per_sample_gradients(ItemModel().eval(), x, y, ce)
