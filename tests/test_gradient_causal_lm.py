"""The gradient strategy on a transformers causal LM checkpoint and a text pool (``checkpoint=DIR``).

A one-layer GPT-2 built from a config, saved as a Trainer-like layout (``out/checkpoint-10``, the
tokenizer in the checkpoint or only in ``out/``), and a jsonl pool of ragged texts. The
references share nothing with the code under test but ``projection_matrix``: the loss is a
per-example forward and ``F.cross_entropy`` over the real tokens, the gradient a per-example
``loss.backward()`` on the unpadded sequence.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from probekit.cli import main
from probekit.cli.common import load_pool
from probekit.errors import ProbekitUsageError
from probekit.probeset import ProbeSet
from probekit.selection.grad_sketch import gradient_sketches, projection_matrix
from probekit.selectors.gradient import GradientSelector
from workspace import one_error_line

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = [f"w{i}" for i in range(56)]  # + 3 special tokens: 59 < the model's 64 embedding rows
N_TEXTS, DIM = 40, 16


def word_tokenizer(words=WORDS, model_max_length=16):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(words, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<eos>"]))
    # no pad token: padded with eos, as a GPT-2 tokenizer is
    return transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<eos>",
                                                model_max_length=model_max_length)


def texts(n=N_TEXTS):
    g = np.random.default_rng(0)
    return [" ".join(g.choice(WORDS, size=int(g.integers(2, 13)))) for _ in range(n)]  # 2-12 tokens


def save_run(root: Path, *, tokenizer_in_checkpoint=True, vocab_size=64) -> Path:
    """``root/out/checkpoint-10`` (model; tokenizer there or in ``root/out``) and ``root/pool.jsonl``."""
    config = transformers.GPT2Config(vocab_size=vocab_size, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                     bos_token_id=2, eos_token_id=2, pad_token_id=2)  # pad = eos, as fine-tunes set it
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    ckpt = root / "out" / "checkpoint-10"
    model.save_pretrained(ckpt)
    word_tokenizer().save_pretrained(ckpt if tokenizer_in_checkpoint else root / "out")
    rows = [{"id": f"t{i:02d}", "text": t, "topic": "ab"[i % 2]} for i, t in enumerate(texts())]
    (root / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ckpt


def test_cli_factorized_on_a_checkpoint(run, tmp_path):
    """``--param method=factorized``: the sketches are the true per-sequence gradients (per-example backward on the
    unpadded sequence) times the factorized matrix, and the CLI picks what the API picks from them."""
    from probekit.selection.causal_lm import CausalLMForSketch
    from probekit.selection.factorized_pool import factorized_projection_matrix

    ckpt, pool = run
    out = tmp_path / "probes.parquet"
    # batches of 8: sorted by length and cut at each batch's longest, the sketches are still the sequences' own
    assert _select(ckpt, ckpt.parents[1] / "pool.jsonl", out, "method=factorized", "factor_dim=8", "batch_size=8") == 0
    ps = ProbeSet.load(out)
    assert ps.provenance.info["sketch"] == "factorized" and ps.provenance.info["factor_dim"] == 8
    model = reference_model(ckpt)
    wrapped = CausalLMForSketch(model)
    matrix = factorized_projection_matrix(wrapped, dim=DIM, seed=0, factor_dim=8)
    params = dict(wrapped.named_parameters())
    rows = []
    for text in texts():
        grads = torch.autograd.grad(own_loss(model, token_ids(text)), list(params.values()), allow_unused=True)
        rows.append(sum(g.reshape(-1) @ matrix[k] for k, g in zip(params, grads) if g is not None))
    ref = torch.stack(rows).detach().numpy()
    from probekit.selectors.gradient import farthest_first

    start = int(np.argmax((ref.astype(np.float64) ** 2).sum(1)))
    assert list(ps.ids) == [pool.ids[i] for i in farthest_first(ref, 8, start)[0]]


def test_cli_bf16_autocast_on_a_checkpoint(run, tmp_path):
    """``--param autocast=bf16``: the forward and backward in bf16 on the CPU; the provenance says so."""
    ckpt, pool = run
    out = tmp_path / "probes.parquet"
    assert _select(ckpt, ckpt.parents[1] / "pool.jsonl", out, "method=factorized", "autocast=bf16") == 0
    info = ProbeSet.load(out).provenance.info
    assert info["sketch"] == "factorized" and info["autocast"] == "bf16" and len(ProbeSet.load(out)) == 8
    with pytest.raises(ProbekitUsageError, match="autocast"):
        GradientSelector(checkpoint=str(ckpt), autocast="int8").select(pool, 2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    return save_run(root), load_pool(str(root / "pool.jsonl"), "id")


def reference_model(ckpt):
    return transformers.AutoModelForCausalLM.from_pretrained(ckpt, local_files_only=True).eval()


def token_ids(text):
    return torch.tensor([word_tokenizer().convert_tokens_to_ids(text.split())])  # [1, L]: no padding


def own_loss(model, ids):
    """Mean next-token cross-entropy of one unpadded sequence."""
    logits = model(input_ids=ids).logits[0]  # [L, V]
    return F.cross_entropy(logits[:-1], ids[0, 1:])


# -- the Python API ---------------------------------------------------------------------------
def test_selects_n_probes_deterministically_per_seed(run):
    ckpt, pool = run
    sel = GradientSelector(checkpoint=str(ckpt), sketch_dim=DIM, batch_size=16)
    first = sel.select(pool, 8, seed=0)
    assert len(first) == 8 and len(set(first.ids)) == 8
    assert list(sel.select(pool, 8, seed=0).ids) == list(first.ids)
    assert list(sel.select(pool, 5, seed=0).ids) == list(first.ids[:5])  # nested
    assert list(GradientSelector(checkpoint=str(ckpt), sketch_dim=DIM).select(pool, 8, seed=1).ids) != \
        list(first.ids)
    info = first.provenance.info
    assert info["checkpoint"] == str(ckpt.resolve()) and info["tokenizer"] == str(ckpt.resolve())
    expected_params = sum(p.numel() for p in reference_model(ckpt).parameters())
    assert info["n_params"] == expected_params and info["text_field"] == "text" and info["max_length"] == 16
    assert first.provenance.params["checkpoint"] == str(ckpt)


def test_the_per_sequence_loss_is_the_mean_cross_entropy_of_its_real_tokens(run):
    from probekit.selection.causal_lm import load_causal_lm, sequence_loss

    ckpt, pool = run
    lm = load_causal_lm("GradientSelector", GradientSelector(checkpoint=str(ckpt)).get_params(), pool)
    with torch.no_grad():
        got = sequence_loss(lm.model(*lm.inputs), lm.labels)
    ids_col, text = list(pool.ids), list(pool.column("text"))
    model = reference_model(ckpt)
    lengths = [len(t.split()) for t in text]
    rows = [int(np.argmin(lengths)), int(np.argmax(lengths)), 3, 17]  # the shortest, the longest, two others
    assert min(lengths) < max(lengths)  # a ragged pool: the short ones are padded
    for row in rows:
        with torch.no_grad():
            expected = own_loss(model, token_ids(text[row]))
        assert float(got[row]) == pytest.approx(float(expected), rel=1e-5), ids_col[row]


def test_the_loss_is_the_monitors_causal_lm_loss(run):
    from probekit.monitor.losses import causal_lm_loss
    from probekit.selection.causal_lm import load_causal_lm, sequence_loss

    ckpt, pool = run
    lm = load_causal_lm("GradientSelector", GradientSelector(checkpoint=str(ckpt)).get_params(), pool)
    ids, mask = lm.inputs
    with torch.no_grad():
        expected = causal_lm_loss(reference_model(ckpt), {"input_ids": ids, "attention_mask": mask})
        got = sequence_loss(lm.model(*lm.inputs), lm.labels)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5)


def test_padded_sketches_equal_each_sequence_alone(run):
    from probekit.selection.causal_lm import load_causal_lm, sequence_loss

    ckpt, pool = run
    lm = load_causal_lm("GradientSelector", GradientSelector(checkpoint=str(ckpt)).get_params(), pool)
    assert bool((lm.inputs[1] == 0).any())  # padding is there to be masked
    got = gradient_sketches(lm.model, lm.inputs, lm.labels, sequence_loss, dim=DIM, seed=3, batch_size=16)
    # Expected: each sequence alone, unpadded, one loss.backward(), projected with the same matrix.
    model = reference_model(ckpt)
    r = projection_matrix(lm.model, dim=DIM, seed=3)  # names "model.<parameter>": the wrapper's
    text = list(pool.column("text"))
    for row in range(len(text)):
        model.zero_grad(set_to_none=True)
        own_loss(model, token_ids(text[row])).backward()
        expected = sum(p.grad.reshape(-1) @ r[f"model.{k}"] for k, p in model.named_parameters())
        np.testing.assert_allclose(got[row], expected.numpy(), rtol=1e-4, atol=1e-5, err_msg=str(row))


def test_badge_sketches_the_lm_head(run):
    ckpt, pool = run
    probes = GradientSelector(checkpoint=str(ckpt), method="badge", sketch_dim=DIM).select(pool, 6)
    head = reference_model(ckpt).lm_head  # tied to the input embedding: [vocab, n_embd], no bias
    assert len(probes) == 6 and probes.provenance.info["n_sketched"] == head.weight.numel() == 64 * 16


def test_the_tokenizer_is_found_above_the_checkpoint(tmp_path):
    ckpt = save_run(tmp_path, tokenizer_in_checkpoint=False)
    pool = load_pool(str(tmp_path / "pool.jsonl"), "id")
    probes = GradientSelector(checkpoint=str(ckpt), sketch_dim=DIM).select(pool, 4)
    assert probes.provenance.info["tokenizer"] == str((tmp_path / "out").resolve())


def test_max_length_truncates(run):
    from probekit.selection.causal_lm import load_causal_lm

    ckpt, pool = run
    lm = load_causal_lm("GradientSelector", GradientSelector(checkpoint=str(ckpt), max_length=5).get_params(), pool)
    expected = [min(len(t.split()), 5) for t in pool.column("text")]
    assert lm.inputs[0].shape[1] == 5 and lm.inputs[1].sum(1).tolist() == expected


# -- the CLI ----------------------------------------------------------------------------------
def _select(ckpt, pool_file, out, *params):
    return main(["select", "--strategy", "gradient", "--n", "8", "--data", str(pool_file), "--text-field", "text",
                 "--id-field", "id", "--param", f"checkpoint={ckpt}", *(a for p in params for a in ("--param", p)),
                 "--param", f"sketch_dim={DIM}", "--out", str(out)])


def test_cli_selects_on_a_checkpoint(run, tmp_path, capsys):
    ckpt, pool = run
    out = tmp_path / "probes.parquet"
    assert _select(ckpt, ckpt.parents[1] / "pool.jsonl", out, "device=cpu", "max_length=12") == 0
    ps = ProbeSet.load(out)
    assert len(ps) == 8 and ps.provenance.info["checkpoint"] == str(ckpt.resolve())
    expected = GradientSelector(checkpoint=str(ckpt), sketch_dim=DIM, device="cpu", max_length=12,
                                text_field="text").select(pool, 8, seed=0)
    assert list(ps.ids) == list(expected.ids)
    assert "selected 8 of 40 examples" in capsys.readouterr().out


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """A short text (one token), a too-small model (a tokenizer mismatch), a Trainer output's top."""
    root = tmp_path_factory.mktemp("bad")
    small = save_run(root / "small", vocab_size=32)  # the tokenizer has 59 tokens
    short = root / "short.jsonl"
    short.write_text("".join(json.dumps({"id": f"s{i}", "text": "w1" if i in (2, 5) else "w1 w2 w3"}) + "\n"
                             for i in range(6)))
    (root / "plain").mkdir()
    (root / "plain" / "notes.txt").write_text("not a model")
    return root, small, short


@pytest.mark.parametrize("case,pattern", [
    ("missing", r"The 'checkpoint' parameter of GradientSelector names .*/nowhere, which does not exist\.$"),
    ("plain", r"The 'checkpoint' parameter of GradientSelector must be a transformers model directory \(with a "
              r"config\.json\); .*/plain is not one; give a directory written by save_pretrained"),
    ("trainer-top", r"must be a transformers model directory \(with a config\.json\); .*/out is not one; it is a "
                    r"Trainer output: name one of its checkpoints, e\.g\. .*/out/checkpoint-10\.$"),
    ("mismatch", r"tokenizer mismatch: the tokenizer \(.*checkpoint-10\) has 59 tokens but checkpoint .*checkpoint-10 "
                 r"embeds 32; give the run's own tokenizer with --param tokenizer=PATH\.$"),
    ("short", r"a causal LM loss needs at least two tokens per example; these have fewer: examples s2, s5\.$"),
    ("device", r"The 'device' parameter of GradientSelector must be a torch device such as 'cpu' or 'cuda:0'\. "
               r"Got 'gpu' instead\.$"),
    ("tokenizer", r"The 'tokenizer' parameter of GradientSelector names .*/nowhere, which does not exist\.$"),
    ("max-length", r"The 'max_length' parameter of GradientSelector must be at most the model's 16 positions\. "
                   r"Got 64 instead\.$"),
    ("max-length-1", r"The 'max_length' parameter of GradientSelector must be None or an int in the range \[2, "
                     r"inf\)\. Got 1 instead\.$"),
    ("model", r"The 'input_field' parameter of GradientSelector does not apply with a checkpoint: .* give one of "
              r"checkpoint and input_field\.$"),
    ("loss", r"The 'loss' parameter of GradientSelector must be 'cross_entropy' with a checkpoint .*Got 'mse' "
             r"instead\.$"),
    ("no-text", r"The 'text_field' parameter of GradientSelector names column 'prompt', which the pool does not "
                r"have; columns: id, text, topic\.$"),
])
def test_errors_are_one_line(run, bad_runs, tmp_path, capsys, case, pattern):
    ckpt, _ = run
    root, small, short = bad_runs
    pool_file, params, target = ckpt.parents[1] / "pool.jsonl", [], ckpt
    if case == "missing":
        target = tmp_path / "nowhere"
    elif case == "plain":
        target = root / "plain"
    elif case == "trainer-top":
        target = ckpt.parent
    elif case == "mismatch":
        target = small
    elif case == "short":
        pool_file = short
    else:
        params = {"device": ["device=gpu"], "tokenizer": [f"tokenizer={tmp_path / 'nowhere'}"],
                  "max-length": ["max_length=64"], "max-length-1": ["max_length=1"], "model": ["input_field=text"],
                  "loss": ["loss=mse"], "no-text": ["text_field=prompt"]}[case]
    argv = ["select", "--strategy", "gradient", "--n", "4", "--data", str(pool_file), "--id-field", "id",
            "--param", f"checkpoint={target}", *(a for p in params for a in ("--param", p)),
            "--out", str(tmp_path / "p.parquet")]
    capsys.readouterr()
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert line.startswith("probekit select: error: ") and re.search(pattern, line), line
    assert not (tmp_path / "p.parquet").exists()


def test_checkpoint_with_a_model_is_refused(run):
    ckpt, pool = run
    with pytest.raises(ProbekitUsageError, match=r"The 'model' parameter of GradientSelector does not apply with a "
                                                 r"checkpoint"):
        GradientSelector(checkpoint=str(ckpt), model=torch.nn.Linear(2, 2)).select(pool, 4)
    with pytest.raises(ProbekitUsageError, match=r"The 'embedding_field' parameter of GradientSelector does not "
                                                 r"apply with a checkpoint"):
        GradientSelector(checkpoint=str(ckpt), embedding_field="text").select(pool, 4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_device_without_cuda_is_refused(run):
    ckpt, pool = run
    with pytest.raises(ProbekitUsageError, match=r"The 'device' parameter of GradientSelector names 'cuda:0', but "
                                                 r"torch sees 0 CUDA device\(s\) here; give 'cpu'"):
        GradientSelector(checkpoint=str(ckpt), device="cuda:0").select(pool, 4)


def test_a_pool_without_a_text_column_needs_text_field(run, tmp_path):
    ckpt, _ = run
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "prompt": "w1 w2 w3"}) + "\n" for i in range(5)))
    with pytest.raises(ProbekitUsageError, match=r"The 'text_field' parameter of GradientSelector is None, so the "
                                                 r"model reads column 'text', which the pool does not have; "
                                                 r"columns: id, prompt\.$"):
        GradientSelector(checkpoint=str(ckpt)).select(load_pool(str(path), "id"), 2)
    probes = GradientSelector(checkpoint=str(ckpt), text_field="prompt", sketch_dim=DIM).select(
        load_pool(str(path), "id"), 2)
    assert len(probes) == 2 and probes.provenance.info["text_field"] == "prompt"


def test_a_directory_that_is_not_a_model_fails_in_one_line(run, tmp_path):
    ckpt, pool = run
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (broken / f).write_bytes((ckpt / f).read_bytes())
    with pytest.raises(ProbekitUsageError, match=r"The 'checkpoint' parameter of GradientSelector: .*broken failed "
                                                 r"to load \(config\.json\): \w+: ") as err:
        GradientSelector(checkpoint=str(broken)).select(pool, 2)
    assert "\n" not in str(err.value)


def test_batches_cut_at_their_longest_sequence_give_the_same_sketches(run):
    """The factorized path sorts the sequences by length and cuts each batch at its longest (trim); padding
    beyond a sequence's end changes nothing, so the sketches equal those of the whole padded width."""
    from probekit.selection.causal_lm import load_causal_lm, sequence_loss

    ckpt, pool = run
    lm = load_causal_lm("test", GradientSelector(checkpoint=str(ckpt), text_field="text").get_params(), pool)
    full = gradient_sketches(lm.model, lm.inputs, lm.labels, sequence_loss, dim=DIM, batch_size=8,
                             method="factorized")
    order = torch.argsort(lm.inputs[1].sum(dim=1), stable=True)
    lm.model.trim = True
    cut = gradient_sketches(lm.model, tuple(t[order] for t in lm.inputs), lm.labels[order], sequence_loss, dim=DIM,
                            batch_size=8, method="factorized")
    assert lm.inputs[1].sum(dim=1)[order][:8].max() < lm.inputs[0].shape[1]  # the first batch was cut
    unsorted = np.empty_like(cut)
    unsorted[order.numpy()] = cut
    np.testing.assert_allclose(unsorted, full, rtol=0, atol=1e-5 * np.abs(full).max())
