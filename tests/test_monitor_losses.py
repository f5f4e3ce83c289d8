"""Per-sample loss helpers: each against an independent computation; padding never changes a sequence's loss."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from probekit.errors import ProbekitUsageError  # noqa: E402
from probekit.monitor.losses import causal_lm_loss, classification_loss, regression_loss  # noqa: E402


def test_classification_per_row_and_per_position():
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 4)
    x, y = torch.randn(6, 5), torch.randint(0, 4, (6,))
    expected = torch.stack([F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(classification_loss(model, (x, y)), expected)
    xs, ys = torch.randn(6, 3, 5), torch.randint(0, 4, (6, 3))  # [b, positions, classes]: the row mean
    expected = torch.stack([F.cross_entropy(model(xs[i]), ys[i]) for i in range(6)])
    torch.testing.assert_close(classification_loss(model, (xs, ys)), expected)
    ys[0, 1:] = -100  # ignored positions: the mean over row 0's one real target
    expected = F.cross_entropy(model(xs[0, :1]), ys[0, :1])
    torch.testing.assert_close(classification_loss(model, (xs, ys))[0], expected)
    ys[1] = -100
    with pytest.raises(ProbekitUsageError, match=r"classification_loss: probes \[1\] have no target"):
        classification_loss(model, (xs, ys))


def test_regression_is_the_mean_squared_error_of_each_row():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    expected = torch.stack([F.mse_loss(model(x[i]), y[i]) for i in range(5)])
    torch.testing.assert_close(regression_loss(model, (x, y)), expected)
    with pytest.raises(ProbekitUsageError, match=r"the model gives \(2,\) outputs per probe but the targets have \(1,\)"):
        regression_loss(model, (x, y[:, :1]))  # [b, 2] against [b, 1] would broadcast silently


class TinyLM(torch.nn.Module):
    """Causal by construction: position t sees tokens <= t only (a running mean of embeddings)."""

    def __init__(self, vocab=11, d=8):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.out = torch.nn.Linear(d, vocab)

    def forward(self, input_ids, attention_mask=None):
        h = self.emb(input_ids)
        if attention_mask is not None:
            h = h * attention_mask[..., None]
        h = h.cumsum(1) / torch.arange(1, h.shape[1] + 1)[None, :, None]
        return type("Out", (), {"logits": self.out(h)})()


def test_causal_lm_masks_padding_and_ignored_labels():
    torch.manual_seed(0)
    model = TinyLM()
    a = torch.tensor([[3, 5, 7, 2, 4]])
    b = torch.tensor([[6, 1, 9]])
    expected_a = F.cross_entropy(model(a).logits[0, :-1], a[0, 1:])
    expected_b = F.cross_entropy(model(b).logits[0, :-1], b[0, 1:])
    batch = {"input_ids": torch.tensor([[3, 5, 7, 2, 4], [6, 1, 9, 0, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])}
    got = causal_lm_loss(model, batch)  # right padding: b's loss as if alone
    torch.testing.assert_close(got, torch.stack([expected_a, expected_b]))
    torch.testing.assert_close(causal_lm_loss(model, a), expected_a[None])  # a bare tensor of ids
    unmasked = causal_lm_loss(model, {**batch, "labels": batch["input_ids"].clone()})  # labels say nothing of padding
    torch.testing.assert_close(unmasked, torch.stack([expected_a, expected_b]))  # the attention mask still rules
    labels = batch["input_ids"].clone()
    labels[0, :3] = -100  # only tokens 3, 4 of a are targets
    got = causal_lm_loss(model, {**batch, "labels": labels.masked_fill(batch["attention_mask"] == 0, -100)})
    expected = F.cross_entropy(model(a).logits[0, 2:4], a[0, 3:5])
    torch.testing.assert_close(got[0], expected)


def test_causal_lm_refuses_a_sequence_without_targets():
    model = TinyLM()
    batch = {"input_ids": torch.tensor([[3, 5, 7], [6, 0, 0]]), "attention_mask": torch.tensor([[1, 1, 1], [1, 0, 0]])}
    with pytest.raises(ProbekitUsageError, match=r"causal_lm_loss: probes \[1\] have no target \(all padding"):
        causal_lm_loss(model, batch)
    with pytest.raises(ProbekitUsageError, match=r"causal_lm_loss needs 'input_ids' in a dict batch\. Got keys \['ids'\]"):
        causal_lm_loss(model, {"ids": batch["input_ids"]})


def test_supervised_batches_need_targets():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ProbekitUsageError, match=r"a dict batch must have a 'labels' key\. Got keys \['x'\]"):
        classification_loss(model, {"x": torch.zeros(2, 2)})
    with pytest.raises(ProbekitUsageError, match=r"regression_loss takes a batch \(inputs, targets\) or a dict with 'labels'"):
        regression_loss(model, torch.zeros(2, 2))
