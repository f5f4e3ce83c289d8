"""Embedders: the shared contract, each embedder against an independent computation, resolve_embedder.

The transformer tests use a tiny randomly initialised BERT and a word-level
tokenizer trained in memory, both saved to a tmp dir: nothing is downloaded.
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never download anything
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pickle

import numpy as np
import pytest
import torch

from probekit.embedders import (
    ColumnEmbedder,
    Embedder,
    NumericEmbedder,
    TfidfSvdEmbedder,
    TorchModelEmbedder,
    TransformerEmbedder,
    check_features,
    resolve_embedder,
)
from probekit.errors import ProbekitUsageError
from probekit.params import Interval
from probekit.pool import Pool
from probekit.testing import make_test_pool

HIDDEN = 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, pool):
    """(directory, tokenizer, model): a 2-layer BERT with random weights, saved locally."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    texts = pool.column("text").tolist() + ["the cat sat on the mat", "a b c d e f g"]
    core = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", core.token_to_id("[CLS]")), ("[SEP]", core.token_to_id("[SEP]"))],
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", model_max_length=64)
    config = BertConfig(vocab_size=core.get_vocab_size(), hidden_size=HIDDEN, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                        pad_token_id=core.token_to_id("[PAD]"))
    torch.manual_seed(0)
    model = BertModel(config).eval()
    directory = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory), tokenizer, model


def manual_mean_pool(tokenizer, model, texts, layer=-1, max_length=None):
    """Each text run alone (no padding at all), hidden states of every token averaged."""
    rows = []
    with torch.no_grad():
        for text in texts:
            enc = tokenizer(text, return_tensors="pt", truncation=max_length is not None, max_length=max_length)
            hidden = model(**enc, output_hidden_states=True).hidden_states[layer][0]  # [T, hidden]
            rows.append(hidden.mean(dim=0).numpy())
    return np.stack(rows)


def _linear(seed=0, d_in=16, d_out=5):
    torch.manual_seed(seed)
    return torch.nn.Linear(d_in, d_out)


def char_counts(texts):
    """A picklable text 'model': [B, 2] = (characters, words) per text."""
    return torch.tensor([[len(t), len(t.split())] for t in texts], dtype=torch.float32)


# Every embedder, built for the test pool. The transformer needs the model dir.
FACTORIES = {
    "tfidf": lambda d: TfidfSvdEmbedder(n_components=8),
    "numeric": lambda d: NumericEmbedder(),
    "column": lambda d: ColumnEmbedder(),
    "transformer": lambda d: TransformerEmbedder(model_path=d, batch_size=5),
    "torch-linear": lambda d: TorchModelEmbedder(fn=_linear(), input_field="embedding", batch_size=7),
    "torch-text": lambda d: TorchModelEmbedder(fn=char_counts, text_field="text", batch_size=7),
}


@pytest.fixture(params=sorted(FACTORIES))
def embedder(request, tiny_model):
    return FACTORIES[request.param](tiny_model[0])


# -- the shared contract ------------------------------------------------------

def test_contract_shape_dtype_determinism(embedder, pool):
    a = embedder.embed(pool)
    assert isinstance(embedder, Embedder)
    assert a.ndim == 2 and a.shape[0] == len(pool) and a.shape[1] >= 1
    assert a.dtype == np.float32 and a.flags.c_contiguous
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(embedder.embed(pool), a)


def test_contract_rows_follow_the_pool_order(embedder, pool):
    perm = np.random.default_rng(3).permutation(len(pool))
    expected = embedder.embed(pool)[perm]
    np.testing.assert_array_equal(embedder.embed(pool.reorder(perm)), expected)


def test_contract_picklable_and_params(embedder, pool):
    clone = pickle.loads(pickle.dumps(embedder))
    np.testing.assert_array_equal(clone.embed(pool), embedder.embed(pool))
    params = embedder.get_params()
    assert set(params) == set(type(embedder)._constraints)  # every parameter is declared
    assert repr(embedder).startswith(type(embedder).__name__ + "(")


def _bad_values(constraint):
    candidates = [-10**9, 1.5, "__not_allowed__", object(), None, True, [1]]
    if isinstance(constraint, Interval) and constraint.low is not None:
        candidates.append(constraint.low - 1)
    accepts = constraint.accepts if hasattr(constraint, "accepts") else (lambda v: isinstance(v, constraint))
    return [v for v in candidates if not accepts(v)][:3]


PARAM_CASES = [
    (key, name, bad)
    for key, factory in sorted(FACTORIES.items())
    for name, constraint in type(factory("unused"))._constraints.items()
    for bad in _bad_values(constraint)
]


@pytest.mark.parametrize("key,name,bad", PARAM_CASES,
                         ids=[f"{k}-{n}-{type(v).__name__}" for k, n, v in PARAM_CASES])
def test_parameters_validated_in_embed_not_constructor(key, name, bad, pool, tiny_model):
    good = FACTORIES[key](tiny_model[0])
    broken = type(good)(**{**good.get_params(), name: bad})  # constructors only store
    assert getattr(broken, name) is bad
    with pytest.raises(ProbekitUsageError, match=rf"The '{name}' parameter of {type(good).__name__} must be"):
        broken.embed(pool)


def test_set_params_refuses_unknown_names():
    with pytest.raises(ProbekitUsageError, match="Invalid parameter 'n_comp' for TfidfSvdEmbedder"):
        TfidfSvdEmbedder().set_params(n_comp=3)


# -- check_features -------------------------------------------------------------

def test_check_features_converts_to_contiguous_float32():
    x = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]
    out = check_features(x, 3, owner="X")
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, np.array([[0, 2], [4, 6], [8, 10]], dtype=np.float32))


@pytest.mark.parametrize("features,match", [
    (np.zeros(3), r"X must give a \[3, d\] matrix .*got shape \(3,\)"),
    (np.zeros((2, 4)), r"X must give a \[3, d\] matrix .*got shape \(2, 4\)"),
    (np.zeros((3, 0)), r"got shape \(3, 0\)"),
    (np.array([["a"], ["b"], ["c"]]), "X must give numbers; got dtype <U1"),
    (np.array([[0.0], [np.nan], [np.inf]]), r"X gave NaN or inf features \(first at row 1\)"),
])
def test_check_features_errors(features, match):
    with pytest.raises(ProbekitUsageError, match=match):
        check_features(features, 3, owner="X")


# -- TF-IDF ----------------------------------------------------------------------

def test_tfidf_similar_sentences_are_closer():
    texts = [
        "the cat sat on the warm mat", "a cat sat on the mat",
        "stock markets fell sharply on bank news", "bank stock markets fell",
        "the choir sang a song at the concert", "a concert song by the choir",
    ]
    x = TfidfSvdEmbedder(n_components=4).embed(Pool.from_dict({"text": texts}))
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)  # L2-normalised
    dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
    for a, b in [(0, 1), (2, 3), (4, 5)]:
        others = [i for i in range(6) if i not in (a, b)]
        assert dist[a, b] < dist[a, others].min()
        assert dist[b, a] < dist[b, others].min()


def test_tfidf_small_pool_and_seed():
    one = TfidfSvdEmbedder().embed(Pool.from_dict({"text": ["just one sentence here"]}))
    assert one.shape[0] == 1  # no SVD possible: the normalised TF-IDF row itself
    np.testing.assert_allclose(np.linalg.norm(one), 1.0, rtol=1e-6)
    p = make_test_pool(60)
    assert TfidfSvdEmbedder(n_components=200).embed(p).shape[1] < 60  # clipped to the data


def test_tfidf_errors():
    with pytest.raises(ProbekitUsageError, match="text column 'body' is not in the pool; columns: text"):
        TfidfSvdEmbedder(text_field="body").embed(Pool.from_dict({"text": ["a b", "c d"]}))
    with pytest.raises(ProbekitUsageError, match="text column 'text' has no usable words"):
        TfidfSvdEmbedder().embed(Pool.from_dict({"text": ["a", "!", None]}))


# -- numeric -----------------------------------------------------------------------

def test_numeric_standardisation_exact():
    rng = np.random.default_rng(0)
    score = rng.normal(3.0, 5.0, size=10)
    vec = rng.normal(size=(10, 3))
    vec[:, 1] = 7.0  # a constant feature stays at zero
    label = np.arange(10) % 3
    p = Pool.from_dict({"score": score.tolist(), "vec": vec.tolist(), "label": label.tolist(),
                        "name": [f"r{i}" for i in range(10)]})
    raw = np.concatenate([score[:, None], vec], axis=1)
    std = raw.std(axis=0)
    expected = (raw - raw.mean(axis=0)) / np.where(std > 0, std, 1.0)
    x = NumericEmbedder().embed(p)  # integer scalars ('label') are left out by default
    np.testing.assert_allclose(x, expected.astype(np.float32), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(x[:, 2], 0.0)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-6)
    chosen = NumericEmbedder(columns=("label",), standardize=False).embed(p)  # a tuple works too
    np.testing.assert_array_equal(chosen, label[:, None].astype(np.float32))


def test_numeric_errors():
    p = Pool.from_dict({"name": ["a", "b"], "label": [1, 2]})
    with pytest.raises(ProbekitUsageError, match="the pool has no numeric columns to embed"):
        NumericEmbedder().embed(p)
    with pytest.raises(ProbekitUsageError, match="numeric column 'age' is not in the pool"):
        NumericEmbedder(columns=["age"]).embed(p)
    with pytest.raises(ProbekitUsageError, match="column 'name' is not numeric"):
        NumericEmbedder(columns=["name"]).embed(p)


# -- column ----------------------------------------------------------------------------

def test_column_values_equal_the_column(pool):
    expected = np.array(pool.column("embedding").tolist(), dtype=np.float32)
    np.testing.assert_array_equal(ColumnEmbedder().embed(pool), expected)
    lists = Pool.from_dict({"v": [[1, 2], [3, 4], [5, 6]]})  # integer lists are fine
    np.testing.assert_array_equal(ColumnEmbedder(field="v").embed(lists), [[1, 2], [3, 4], [5, 6]])


@pytest.mark.parametrize("data,match", [
    ({"x": [1.0, 2.0]}, "embedding column 'embedding' is not in the pool; columns: x"),
    ({"embedding": [1.0, 2.0]}, "embedding column 'embedding' must hold a list of numbers per row; it holds double"),
    ({"embedding": [[1.0, 2.0], [3.0]]}, "must have one length for every row; found lengths 1 to 2"),
    ({"embedding": [[1.0], None]}, "embedding column 'embedding' has 1 missing rows"),
    ({"embedding": [[], []]}, "must have one length for every row; found lengths 0 to 0"),
])
def test_column_errors(data, match):
    with pytest.raises(ProbekitUsageError, match=match):
        ColumnEmbedder().embed(Pool.from_dict(data))


# -- resolve_embedder ----------------------------------------------------------------

def _cols(*names):
    values = {"embedding": [[0.0, 1.0], [1.0, 0.0]], "vec2": [[1.0, 2.0], [2.0, 1.0]],
              "text": ["a cat", "a dog"], "body": ["red fish", "blue fish"], "score": [0.5, 1.5]}
    return Pool.from_dict({n: values[n] for n in names})


@pytest.mark.parametrize("names,kwargs,expected", [
    (("embedding", "vec2", "text", "body", "score"), {"embedding_field": "vec2", "text_field": "body"},
     ColumnEmbedder(field="vec2")),
    (("embedding", "text", "body", "score"), {"text_field": "body"}, TfidfSvdEmbedder(text_field="body")),
    (("embedding", "text", "score"), {}, ColumnEmbedder(field="embedding")),
    (("text", "body", "score"), {}, TfidfSvdEmbedder(text_field="text")),
    (("body", "score"), {}, NumericEmbedder()),
])
def test_resolve_embedder_choice_order(names, kwargs, expected):
    chosen = resolve_embedder(_cols(*names), **kwargs)
    assert type(chosen) is type(expected)
    assert chosen.get_params() == expected.get_params()


def test_resolve_embedder_passes_a_given_embedder_through():
    given = NumericEmbedder(columns=["score"])
    assert resolve_embedder(_cols("text", "score"), given, text_field="text") is given


def test_resolve_embedder_errors():
    p = _cols("text", "score")
    with pytest.raises(ProbekitUsageError, match="The 'embedder' parameter must be a probekit Embedder. Got str instead."):
        resolve_embedder(p, "tfidf")
    with pytest.raises(ProbekitUsageError, match="column 'vec' is not in the pool; columns: text, score"):
        resolve_embedder(p, embedding_field="vec")
    with pytest.raises(ProbekitUsageError, match="column 'body' is not in the pool"):
        resolve_embedder(p, text_field="body")


# -- transformer -----------------------------------------------------------------------

def test_transformer_mean_pooling_equals_manual(tiny_model, pool):
    directory, tokenizer, model = tiny_model
    texts = pool.column("text").tolist()[:10] + ["the cat sat on the mat", "mat"]  # lengths differ: padding
    expected = manual_mean_pool(tokenizer, model, texts)
    x = TransformerEmbedder(model_path=directory, batch_size=4).embed(Pool.from_dict({"text": texts}))
    assert x.shape == (len(texts), HIDDEN)
    np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-5)


def test_transformer_padding_does_not_change_embeddings(tiny_model):
    directory = tiny_model[0]
    # Very different lengths, so that batches of 4 pad the short ones a lot.
    texts = ["cat", "the cat sat on the mat", "a b c d e f g a b c d e f g", "mat", "the", "sat on"]
    p = Pool.from_dict({"text": texts})
    alone = TransformerEmbedder(model_path=directory, batch_size=1).embed(p)
    padded = TransformerEmbedder(model_path=directory, batch_size=4).embed(p)
    np.testing.assert_allclose(padded, alone, rtol=1e-4, atol=1e-5)
    assert np.abs(alone[0] - alone[3]).max() > 1e-3  # the rows do differ


def test_transformer_layer_and_max_length(tiny_model, pool):
    directory, tokenizer, model = tiny_model
    texts = pool.column("text").tolist()[:6]
    p = Pool.from_dict({"text": texts})
    first = TransformerEmbedder(model_path=directory, layer=0).embed(p)
    np.testing.assert_allclose(first, manual_mean_pool(tokenizer, model, texts, layer=0), rtol=1e-4, atol=1e-5)
    middle = TransformerEmbedder(model_path=directory, layer=-2).embed(p)
    np.testing.assert_allclose(middle, manual_mean_pool(tokenizer, model, texts, layer=1), rtol=1e-4, atol=1e-5)
    short = TransformerEmbedder(model_path=directory, max_length=3).embed(p)
    expected = manual_mean_pool(tokenizer, model, texts, max_length=3)
    np.testing.assert_allclose(short, expected, rtol=1e-4, atol=1e-5)


def test_transformer_missing_texts_and_path_types(tiny_model):
    from pathlib import Path

    directory, tokenizer, model = tiny_model
    p = Pool.from_dict({"text": ["the cat", None, ""]})
    x = TransformerEmbedder(model_path=Path(directory)).embed(p)  # a PathLike works too
    expected = manual_mean_pool(tokenizer, model, ["the cat", "", ""])
    np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-5)


def test_transformer_reloads_a_model_saved_over_the_old_one(tiny_model, tmp_path):
    import shutil

    from transformers import BertModel

    directory, tokenizer, model = tiny_model
    target = tmp_path / "model"
    shutil.copytree(directory, target)
    p = Pool.from_dict({"text": ["the cat sat", "on the mat"]})
    before = TransformerEmbedder(model_path=str(target)).embed(p)
    torch.manual_seed(1)
    other = BertModel(model.config).eval()
    other.save_pretrained(target)
    after = TransformerEmbedder(model_path=str(target)).embed(p)
    np.testing.assert_allclose(after, manual_mean_pool(tokenizer, other, ["the cat sat", "on the mat"]),
                               rtol=1e-4, atol=1e-5)
    assert np.abs(after - before).max() > 1e-3


def test_transformer_path_errors(tmp_path, pool):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ProbekitUsageError, match=rf"model path '{missing}' does not exist;.*never downloads") as info:
        TransformerEmbedder(model_path=str(missing)).embed(pool)
    assert "\n" not in str(info.value)
    with pytest.raises(ProbekitUsageError, match=rf"model path '{tmp_path}' is not a transformers model directory"):
        TransformerEmbedder(model_path=str(tmp_path)).embed(pool)
    hub_name = "sentence-transformers/all-MiniLM-L6-v2"  # a hub id is not fetched
    with pytest.raises(ProbekitUsageError, match=f"model path '{hub_name}' does not exist"):
        TransformerEmbedder(model_path=hub_name).embed(pool)
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(ProbekitUsageError, match=rf"model path '{tmp_path}' could not be loaded as a transformers model"):
        TransformerEmbedder(model_path=str(tmp_path)).embed(pool)


def test_transformer_other_errors(tiny_model, pool):
    directory = tiny_model[0]
    with pytest.raises(ProbekitUsageError, match=r"The 'layer' parameter of TransformerEmbedder must be an int in the range \[-3, 2\] for this model. Got 3 instead."):
        TransformerEmbedder(model_path=directory, layer=3).embed(pool)
    with pytest.raises(ProbekitUsageError, match=r"range \[-3, 2\] for this model. Got -4 instead."):
        TransformerEmbedder(model_path=directory, layer=-4).embed(pool)
    with pytest.raises(ProbekitUsageError, match="The 'device' parameter of TransformerEmbedder must be a torch device"):
        TransformerEmbedder(model_path=directory, device="toaster").embed(pool)
    with pytest.raises(ProbekitUsageError, match="text column 'body' is not in the pool"):
        TransformerEmbedder(model_path=directory, text_field="body").embed(pool)


# -- torch -----------------------------------------------------------------------------------

def test_torch_linear_equals_manual_application(pool):
    linear = _linear(seed=1)
    x = TorchModelEmbedder(fn=linear, input_field="embedding", batch_size=5).embed(pool)
    inputs = np.array(pool.column("embedding").tolist(), dtype=np.float64)
    weight, bias = linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy()
    expected = inputs @ weight.T + bias
    assert x.shape == (len(pool), 5)
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)


def test_torch_module_runs_in_eval_mode_and_mode_is_restored(pool):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Dropout(0.5)).train()
    x = TorchModelEmbedder(fn=net, input_field="embedding").embed(pool)
    assert net.training  # back in training mode
    with torch.no_grad():
        expected = net[0](torch.tensor(np.array(pool.column("embedding").tolist()), dtype=torch.float32)).numpy()
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-6)


def test_torch_text_field_and_scalar_column():
    p = Pool.from_dict({"text": ["one two", "three", None], "score": [1.0, 2.5, -1.0]})
    x = TorchModelEmbedder(fn=char_counts, text_field="text").embed(p)
    np.testing.assert_array_equal(x, [[7, 2], [5, 1], [0, 0]])
    seen = []

    def double(batch):
        seen.append(tuple(batch.shape))
        return batch * 2

    y = TorchModelEmbedder(fn=double, input_field="score", batch_size=2).embed(p)
    np.testing.assert_array_equal(y, [[2.0], [5.0], [-2.0]])
    assert seen == [(2, 1), (1, 1)]  # scalar column -> [B, 1], in batches of 2
    z = TorchModelEmbedder(fn=lambda b: b.numpy() + 1, input_field="score").embed(p)  # numpy output works
    np.testing.assert_array_equal(z, [[2.0], [3.5], [0.0]])


@pytest.mark.parametrize("fn,match", [
    (lambda b: b.sum(dim=1), r"fn must return a \[B, d\] tensor of hidden states \(B = 7, the batch size\); "
                             r"it returned a Tensor of shape \(7,\)"),
    (lambda b: b[:3], r"\(B = 7, the batch size\); it returned a Tensor of shape \(3, 16\)"),
    (lambda b: b[:, None], r"it returned a Tensor of shape \(7, 1, 16\)"),
    (lambda b: b[:, :0], r"it returned a Tensor of shape \(7, 0\)"),
    (lambda b: (b, b), r"must return a \[B, d\] torch.Tensor or numpy array of hidden states; "
                       r"it returned a tuple of 2 items for a batch of 7 rows"),
    (lambda b: b if len(b) == 7 else b[:, :15],  # 200 rows: 28 batches of 7, then one of 4
     r"same width d for every batch; it returned d = 15 for batch 28 but d = 16 for batch 0"),
    (lambda b: np.full((len(b), 2), "x"), "fn must return numbers; it returned dtype <U1"),
    (lambda b: b * float("nan"), r"TorchModelEmbedder.embed gave NaN or inf features \(first at example '[^']+'\)"),
])
def test_torch_bad_outputs(fn, match, pool):
    with pytest.raises(ProbekitUsageError, match=match):
        TorchModelEmbedder(fn=fn, input_field="embedding", batch_size=7).embed(pool)


def test_torch_input_errors(pool):
    identity = torch.nn.Identity()
    with pytest.raises(ProbekitUsageError, match="needs exactly one of 'input_field' .* Got input_field=None, text_field=None"):
        TorchModelEmbedder(fn=identity).embed(pool)
    with pytest.raises(ProbekitUsageError, match="Got input_field='embedding', text_field='text' instead"):
        TorchModelEmbedder(fn=identity, input_field="embedding", text_field="text").embed(pool)
    with pytest.raises(ProbekitUsageError, match="column 'pixels' is not in the pool"):
        TorchModelEmbedder(fn=identity, input_field="pixels").embed(pool)
    with pytest.raises(ProbekitUsageError, match="input column 'text' must hold numbers or lists of numbers; it holds string"):
        TorchModelEmbedder(fn=identity, input_field="text").embed(pool)
    holes = Pool.from_dict({"score": [1.0, None, float("nan")]})
    with pytest.raises(ProbekitUsageError, match=r"input column 'score' has 2 rows with missing, NaN or inf values \(first at row 1\)"):
        TorchModelEmbedder(fn=identity, input_field="score").embed(holes)
    with pytest.raises(ProbekitUsageError, match="The 'fn' parameter of TorchModelEmbedder must be a callable"):
        TorchModelEmbedder(fn="model.pt", input_field="embedding").embed(pool)
