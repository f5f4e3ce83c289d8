"""The factorized gradient sketch (``method="factorized"``) against the true per-sample gradients.

The references share nothing with the code under test but the matrix it projects by: every
per-sample gradient comes from a per-example ``torch.autograd.grad`` of that example's loss alone,
and the sketch must equal those gradients times ``factorized_projection_matrix`` (a fixed linear
map) to float tolerance, layer type by layer type. Whether that map is a good sketch is checked
against the true gradients only: inner products against the Johnson-Lindenstrauss spread of a
dense Gaussian of the same dimension, sqrt((1 + cos^2) / dim), and k-center coverage of the pool
in the true gradient geometry against that of dense Gaussian sketches.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from probekit.errors import ProbekitUsageError
from probekit.selection.factorized_pool import factorized_projection_matrix
from probekit.selection.grad_sketch import gradient_sketches, projection_matrix
from probekit.selectors.gradient import farthest_first

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ce(outputs, targets):
    return F.cross_entropy(outputs, targets, reduction="none")


def lm_loss(logits, labels):
    tokens = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                             reduction="none").reshape(labels.shape)
    return tokens.sum(1) / (labels != -100).sum(1)


def loop_gradients(model, inputs, targets, loss_fn) -> dict[str, torch.Tensor]:
    """name -> [N, *shape] of the trainable parameters: one example at a time, its loss alone."""
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    out = {k: [] for k in params}
    for i in range(len(targets)):
        args = tuple(a[i:i + 1] for a in inputs)
        grads = torch.autograd.grad(loss_fn(model(*args), targets[i:i + 1]).sum(), list(params.values()),
                                    allow_unused=True)
        for k, g in zip(params, grads):
            out[k].append(torch.zeros_like(params[k]) if g is None else g)
    return {k: torch.stack(v) for k, v in out.items()}


def dense_projection(grads, matrix) -> np.ndarray:
    n = next(iter(grads.values())).shape[0]
    return sum(grads[k].reshape(n, -1).double() @ matrix[k].double() for k in matrix).numpy()


# -- models, one per kind of layer ----------------------------------------------------
class SeqMLP(nn.Module):
    """Linear and LayerNorm over positions: each weight gradient a sum over T outer products."""

    def __init__(self):
        super().__init__()
        self.inp, self.norm, self.out = nn.Linear(6, 40), nn.LayerNorm(40), nn.Linear(40, 3)

    def forward(self, x):  # [B, T, 6] -> [B, 3]
        return self.out(torch.tanh(self.norm(self.inp(x)))).mean(1)


class Bag(nn.Module):
    """Embedding (padding_idx 0: no gradient to that row) -> masked mean -> linear head; a free scale."""

    def __init__(self):
        super().__init__()
        self.emb, self.head = nn.Embedding(50, 36, padding_idx=0), nn.Linear(36, 4)
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 36))  # no layer holds it: a stand-in

    def forward(self, tokens):  # [B, T]
        mask = (tokens != 0).unsqueeze(-1).float()
        h = (self.emb(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(h * self.scale)


class Encoder(nn.Module):
    """nn.TransformerEncoder (torch's own attention: fused in-projection) with a key padding mask and a
    free position table."""

    def __init__(self, batch_first=True):
        super().__init__()
        self.batch_first = batch_first
        self.emb = nn.Embedding(30, 16)
        self.pos = nn.Parameter(0.1 * torch.randn(7, 16))
        layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=24, dropout=0.0, batch_first=batch_first)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, tokens):
        pad = tokens == 0
        h = self.emb(tokens) + self.pos
        h = self.enc(h if self.batch_first else h.transpose(0, 1), src_key_padding_mask=pad)
        h = h if self.batch_first else h.transpose(0, 1)
        keep = (~pad).unsqueeze(-1).float()
        return self.head((h * keep).sum(1) / keep.sum(1))


class CausalAttention(nn.Module):
    """nn.MultiheadAttention called directly: a causal boolean mask, the attention weights returned (need_weights
    by default) and used."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(30, 16)
        self.mha = nn.MultiheadAttention(16, 4, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, tokens):
        h = self.emb(tokens)
        causal = torch.ones(h.shape[1], h.shape[1], dtype=torch.bool).triu(1)
        out, weights = self.mha(h, h, h, attn_mask=causal)
        return self.head(out.mean(1)) + weights.std(dim=(1, 2))[:, None]


class SharedWeight(nn.Module):
    """A weight also used outside its layer's forward: the hooks do not see all of its gradient."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)) + F.linear(x, self.a.weight))


class FreeWeights(nn.Module):
    """A free matrix used as ``x @ w`` (a stand-in [B, 8, 8] would batch it wrongly: the check sends it to the
    vmap path), one used through F.linear (a stand-in fails there), a frozen weight with a trainable bias."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(0.3 * torch.randn(8, 8))
        self.v = nn.Parameter(0.3 * torch.randn(8, 8))
        self.head = nn.Linear(8, 3)
        self.head.weight.requires_grad_(False)

    def forward(self, x):
        return self.head(torch.tanh(F.linear(torch.tanh(x @ self.w), self.v)))


class LM(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, mask):
        return self.model(input_ids=ids, attention_mask=mask).logits


def tiny_gpt2(n_layer=1, n_embd=32, vocab=40):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=12, n_embd=n_embd, n_layer=n_layer, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return LM(transformers.GPT2LMHeadModel(config).eval())  # tied embedding / head, Conv1D layers


def ragged_lm_batch(n=9, length=10, vocab=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (n, length), generator=g)
    lengths = torch.randint(3, length + 1, (n,), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()  # right padding
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return (ids, mask), labels


def case(name):
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    if name == "mlp":
        model = nn.Sequential(nn.Linear(12, 48), nn.Tanh(), nn.Linear(48, 5))
        return model, (torch.randn(9, 12, generator=g),), torch.randint(0, 5, (9,), generator=g), ce
    if name == "inplace relu":  # each Linear's output changed in place: the model must go on with a copy
        model = nn.Sequential(nn.Linear(12, 24), nn.ReLU(inplace=True), nn.Linear(24, 24), nn.ReLU(inplace=True),
                              nn.Linear(24, 5))
        return model, (torch.randn(9, 12, generator=g),), torch.randint(0, 5, (9,), generator=g), ce
    if name == "sequence mlp":
        return SeqMLP(), (torch.randn(9, 5, 6, generator=g),), torch.randint(0, 3, (9,), generator=g), ce
    if name == "embedding":
        tokens = torch.randint(0, 50, (9, 6), generator=g)
        tokens[:, 0] = 1 + tokens[:, 0] % 49  # at least one real token
        return Bag(), (tokens,), torch.randint(0, 4, (9,), generator=g), ce
    if name in ("attention", "attention, sequence first"):
        tokens = torch.randint(1, 30, (9, 7), generator=g)
        tokens[::2, 5:] = 0  # padded keys
        return Encoder(batch_first=name == "attention"), (tokens,), torch.randint(0, 3, (9,), generator=g), ce
    if name == "causal attention":
        return CausalAttention(), (torch.randint(0, 30, (9, 6), generator=g),), torch.randint(0, 3, (9,), generator=g), ce
    if name == "shared weight":
        return SharedWeight(), (torch.randn(9, 8, generator=g),), torch.randint(0, 3, (9,), generator=g), ce
    if name == "free weights":
        return FreeWeights(), (torch.randn(9, 8, generator=g),), torch.randint(0, 3, (9,), generator=g), ce
    if name == "gpt2":
        inputs, labels = ragged_lm_batch()
        return tiny_gpt2(), inputs, labels, lm_loss
    raise KeyError(name)


CASES = ["mlp", "inplace relu", "sequence mlp", "embedding", "attention", "attention, sequence first", "causal attention",
         "shared weight", "free weights", "gpt2"]


# what the first batch's check leaves to stand-ins and to the vmap path, per case: everything else is factorized
FALLBACK = {
    "embedding": ({"scale"}, set()),
    "attention": ({"pos"}, set()),
    "attention, sequence first": ({"pos"}, {f"enc.layers.{i}.{m}.{p}" for i in (0, 1) for m in
                                            ("linear1", "linear2", "norm1", "norm2") for p in ("weight", "bias")}),
    "shared weight": (set(), {"a.weight"}),
    "free weights": (set(), {"w", "v"}),
}


@pytest.mark.parametrize("name", CASES)
def test_the_check_takes_what_it_should(name):
    from probekit.selection.factorized_sketch import FactorizedSketcher

    model, inputs, targets, loss_fn = case(name)
    model.eval()
    sketcher = FactorizedSketcher(model, dim=16, seed=0, factor_dim=4)
    sketcher.prepare(inputs, targets, loss_fn)
    assert (set(sketcher.standins), set(sketcher.dense)) == FALLBACK.get(name, (set(), set()))


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("factor_dim", [4, 64])  # 4: both sides projected; 64: sides kept as they are
def test_sketch_is_the_true_gradients_times_its_matrix(name, factor_dim):
    model, inputs, targets, loss_fn = case(name)
    model.eval()
    sketches = gradient_sketches(model, inputs, targets, loss_fn, dim=32, seed=3, batch_size=4,
                                 method="factorized", factor_dim=factor_dim)
    matrix = factorized_projection_matrix(model, dim=32, seed=3, factor_dim=factor_dim,
                                          batch=(tuple(a[:4] for a in inputs), targets[:4], loss_fn))
    assert set(matrix) == {k for k, p in model.named_parameters() if p.requires_grad}
    ref = dense_projection(loop_gradients(model, inputs, targets, loss_fn), matrix)
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(sketches, ref, rtol=0, atol=2e-5 * np.abs(ref).max())


def test_the_matrix_has_the_kronecker_structure():
    """A layer's block is (A kron B) C: rank <= kr kc, the sketch linear in the gradient by construction."""
    model = nn.Sequential(nn.Linear(20, 30))
    m = factorized_projection_matrix(model, dim=64, factor_dim=4)["0.weight"]  # [30 * 20, 64]
    assert torch.linalg.matrix_rank(m.double(), atol=1e-4) <= 16  # float32 entries: rounding is ~1e-7
    # M[(i, j), d] = sum_a A[i, a] N_a[j, d]: as a [rows, cols * dim] matrix, rank <= kr; likewise for cols
    assert torch.linalg.matrix_rank(m.reshape(30, -1).double(), atol=1e-4) == 4
    assert torch.linalg.matrix_rank(m.reshape(30, 20, 64).transpose(0, 1).reshape(20, -1).double(), atol=1e-4) == 4


def test_padding_is_masked():
    """A padded sequence's sketch is that of the same sequence alone, unpadded."""
    model = tiny_gpt2()
    (ids, mask), labels = ragged_lm_batch()
    padded = gradient_sketches(model, (ids, mask), labels, lm_loss, dim=32, batch_size=9, method="factorized")
    for i in range(len(ids)):
        length = int(mask[i].sum())
        alone = gradient_sketches(model, (ids[i:i + 1, :length], mask[i:i + 1, :length]),
                                  labels[i:i + 1, :length], lm_loss, dim=32, batch_size=1, method="factorized")
        np.testing.assert_allclose(padded[i], alone[0], rtol=0, atol=1e-5 * np.abs(alone).max())


def test_batch_size_and_seed():
    model, inputs, targets, loss_fn = case("attention")
    model.eval()
    a = gradient_sketches(model, inputs, targets, loss_fn, dim=32, seed=0, batch_size=2, method="factorized")
    b = gradient_sketches(model, inputs, targets, loss_fn, dim=32, seed=0, batch_size=9, method="factorized")
    c = gradient_sketches(model, inputs, targets, loss_fn, dim=32, seed=1, batch_size=9, method="factorized")
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())
    assert not np.allclose(b, c)


def test_the_model_is_left_as_it_was():
    model, inputs, targets, loss_fn = case("attention")
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gradient_sketches(model, inputs, targets, loss_fn, dim=16, batch_size=4, method="factorized")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert not any(m.training for m in model.modules())
    assert not any(m._forward_hooks or "forward" in vars(m) for m in model.modules())  # hooks and stand-ins gone


def jl_errors(model, inputs, targets, loss_fn, seeds=5, dim=256):
    """Inner-product errors of the sketches, / (|g_i| |g_j|), over pairs and seeds, and the dense Gaussian's
    theoretical spread for these pairs."""
    grads = loop_gradients(model, inputs, targets, loss_fn)
    n = len(targets)
    g = torch.cat([v.reshape(n, -1) for v in grads.values()], 1).double()
    norms = g.norm(dim=1)
    cos = (g @ g.T) / norms[:, None] / norms[None, :]
    iu = torch.triu_indices(n, n, 1)
    errors = []
    for seed in range(seeds):
        s = torch.from_numpy(gradient_sketches(model, inputs, targets, loss_fn, dim=dim, seed=seed, batch_size=16,
                                               method="factorized")).double()
        errors.append(((s @ s.T) / norms[:, None] / norms[None, :] - cos)[iu[0], iu[1]])
    spread = float(((1 + cos[iu[0], iu[1]] ** 2).mean() / dim) ** 0.5)
    return torch.cat(errors), spread


def test_inner_products_within_the_jl_spread_on_sequences():
    """Measured (docs/gradients.md): 1.05x the dense Gaussian's spread on a 2 x 64 GPT-2."""
    model = tiny_gpt2(n_layer=2, n_embd=64, vocab=128)
    inputs, labels = ragged_lm_batch(n=40, length=12, vocab=128)
    errors, spread = jl_errors(model, inputs, labels, lm_loss)
    assert abs(float(errors.mean())) < 4 * float(errors.std()) / len(errors) ** 0.5 + 0.01  # unbiased
    assert float(errors.std()) < 1.2 * spread


def test_inner_products_within_the_jl_spread_on_rank_one_gradients():
    """An MLP's per-layer gradients are rank one (T = 1), the Kronecker step's worst case: measured 1.16x."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, 10)).eval()
    g = torch.Generator().manual_seed(0)
    errors, spread = jl_errors(model, (torch.randn(40, 64, generator=g),), torch.randint(0, 10, (40,), generator=g),
                               ce)
    assert abs(float(errors.mean())) < 4 * float(errors.std()) / len(errors) ** 0.5 + 0.01
    assert float(errors.std()) < 1.4 * spread


def test_k_center_coverage_equals_the_dense_sketches():
    """The k-center probes chosen on factorized sketches cover the pool in the true gradient geometry as well
    as those chosen on dense Gaussian sketches: radius ratio within 5% on average over 6 seeds."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    centers = 3 * torch.randn(6, 24, generator=g)
    x = centers[torch.arange(48) % 6] + 0.5 * torch.randn(48, 24, generator=g)  # clustered inputs
    y = torch.arange(48) % 4
    model = nn.Sequential(nn.Linear(24, 64), nn.Tanh(), nn.Linear(64, 4)).eval()
    grads = loop_gradients(model, (x,), y, ce)
    true = torch.cat([v.reshape(48, -1) for v in grads.values()], 1).double()

    def radius(order):
        return float(torch.cdist(true, true[order]).min(1).values.max())

    ratios = []
    for seed in range(6):
        fact = gradient_sketches(model, x, y, ce, dim=128, seed=seed, method="factorized")
        dense = dense_projection(grads, projection_matrix(model, dim=128, seed=seed))
        picks = [farthest_first(s, 8, int(np.argmax((s ** 2).sum(1))))[0] for s in (fact, dense)]
        ratios.append(radius(picks[0]) / radius(picks[1]))
    assert abs(np.mean(ratios) - 1) < 0.05


def test_bf16_autocast():
    """Under bf16 autocast the sketch follows the bf16 forward: close to the float32 sketch."""
    model, inputs, targets, loss_fn = case("sequence mlp")
    model.eval()
    full = gradient_sketches(model, inputs, targets, loss_fn, dim=32, batch_size=4, method="factorized")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = gradient_sketches(model, inputs, targets, loss_fn, dim=32, batch_size=4, method="factorized")
    assert half.dtype == np.float32
    assert np.abs(half - full).max() < 0.05 * np.abs(full).max()


def test_bad_parameters_are_one_line():
    model, inputs, targets, loss_fn = case("mlp")
    with pytest.raises(ProbekitUsageError, match="factor_dim"):
        gradient_sketches(model, inputs, targets, loss_fn, method="factorized", factor_dim=0)
    with pytest.raises(ProbekitUsageError, match="'layer' parameter .* applies to method='badge'"):
        gradient_sketches(model, inputs, targets, loss_fn, method="factorized", layer="0")
    with pytest.raises(ProbekitUsageError, match="per-sample losses"):
        gradient_sketches(model, inputs, targets, lambda o, t: ce(o, t).mean(), method="factorized")


class PaddedBag(nn.Module):
    """Pad tokens reach the loss (no masking in the forward): only padding_idx keeps their row's gradient at zero."""

    def __init__(self):
        super().__init__()
        self.emb, self.head = nn.Embedding(20, 12, padding_idx=0), nn.Linear(12, 3)

    def forward(self, tokens):
        return self.head(torch.tanh(self.emb(tokens)).mean(1))


class Routed(nn.Module):
    """An expert layer applied to the rows whose first input is positive: data-dependent routing."""

    def __init__(self):
        super().__init__()
        self.inp, self.expert, self.head = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        routed = x[:, 0] > 0
        return self.head(h.index_put((routed,), torch.tanh(self.expert(h[routed]))))


class Odd(nn.Module):
    """A keyword call, a two-dimensional layer norm and a [1, d] row shared by the batch, squeezed."""

    def __init__(self):
        super().__init__()
        self.inp, self.q, self.head = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.norm = nn.LayerNorm((2, 4))
        self.query = nn.Parameter(torch.randn(1, 8))

    def forward(self, x):
        h = torch.tanh(self.inp(input=x))
        h = self.norm(h.reshape(-1, 2, 4)).reshape(-1, 8)
        return self.head(h + self.q(self.query).squeeze(0))


def mixed_matrix(model, factorized_names, dim, seed, factor_dim):
    """The factorized blocks for ``factorized_names``, the dense path's for every other trainable tensor."""
    fact = factorized_projection_matrix(model, dim=dim, seed=seed, factor_dim=factor_dim)
    dense = projection_matrix(model, dim=dim, seed=seed)
    return {k: fact[k] if k in factorized_names else dense[k] for k in dense}


def test_padding_idx_rows_get_no_gradient():
    torch.manual_seed(0)
    model = PaddedBag().eval()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 20, (10, 7), generator=g)
    tokens[:, 4:] = 0  # pad tokens feed the loss
    y = torch.randint(0, 3, (10,), generator=g)
    sketches = gradient_sketches(model, tokens, y, ce, dim=32, batch_size=4, method="factorized", factor_dim=4)
    ref = dense_projection(loop_gradients(model, (tokens,), y, ce),
                           factorized_projection_matrix(model, dim=32, factor_dim=4))
    np.testing.assert_allclose(sketches, ref, rtol=0, atol=2e-5 * np.abs(ref).max())


def test_routing_that_changes_after_the_check_is_not_sketched_wrong():
    """The check's three rows all go to the expert; a later batch's do not. The pool starts again with the expert
    dense, and there, as for method="projection", routing by data is refused in one line, not sketched wrong."""
    torch.manual_seed(0)
    model = Routed().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 6, generator=g)
    x[[0, 2, 4], 0] = x[[0, 2, 4], 0].abs() + 0.1  # the first batch's first, middle and last rows: routed
    y = torch.randint(0, 3, (12,), generator=g)
    with pytest.raises(ProbekitUsageError, match="could not compute per-sample gradients under torch.func.vmap"):
        gradient_sketches(model, x, y, ce, dim=32, batch_size=5, method="factorized", factor_dim=4)


def test_keyword_calls_two_dimensional_norms_and_shared_rows():
    from probekit.selection.factorized_sketch import FactorizedSketcher

    torch.manual_seed(0)
    model = Odd().eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(10, 6, generator=g), torch.randint(0, 3, (10,), generator=g)
    sketches = gradient_sketches(model, x, y, ce, dim=32, batch_size=4, method="factorized", factor_dim=4)
    sketcher = FactorizedSketcher(model, dim=32, seed=0, factor_dim=4)
    sketcher.prepare((x[:4],), y[:4], ce)
    factorized = set(sketcher.plan.matrices) | set(sketcher.plan.vectors)
    assert {"inp.weight", "inp.bias", "head.weight"} <= factorized  # the keyword call is seen
    ref = dense_projection(loop_gradients(model, (x,), y, ce), mixed_matrix(model, factorized, 32, 0, 4))
    np.testing.assert_allclose(sketches, ref, rtol=0, atol=2e-5 * np.abs(ref).max())


def test_a_mismatched_written_out_attention_is_not_used_again(monkeypatch):
    """Forced: the written-out attention disagrees with torch's. The check sends its weights dense, and later
    batches run torch's own forward, so every other layer is sketched on the user's model."""
    import probekit.selection.factorized_attention as fa

    real = fa._mask
    monkeypatch.setattr(fa, "_mask", lambda *a: None)  # the causal mask forgotten: not torch's attention
    model, inputs, targets, loss_fn = case("causal attention")
    model.eval()
    sketches = gradient_sketches(model, inputs, targets, loss_fn, dim=32, batch_size=4, method="factorized",
                                 factor_dim=4)
    monkeypatch.setattr(fa, "_mask", real)
    mha = {"mha.in_proj_weight", "mha.in_proj_bias", "mha.out_proj.weight", "mha.out_proj.bias"}
    names = {k for k, _ in model.named_parameters()} - mha
    ref = dense_projection(loop_gradients(model, inputs, targets, loss_fn), mixed_matrix(model, names, 32, 0, 4))
    np.testing.assert_allclose(sketches, ref, rtol=0, atol=2e-5 * np.abs(ref).max())


def test_train_mode_is_refused():
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.1), nn.Linear(8, 2)).train()
    with pytest.raises(ProbekitUsageError, match=r"eval mode: 1 \(Dropout\) is in train mode; call model.eval"):
        gradient_sketches(model, torch.randn(3, 4), torch.tensor([0, 1, 0]), ce, method="factorized")
