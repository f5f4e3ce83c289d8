"""``probekit export --format lm-eval`` through the real lm-evaluation-harness.

lm-evaluation-harness walks a task's documents in their own order, keeps those
whose index is in ``samples[task]``, and logs the k-th one it evaluates with
``doc_id = samples[task][k]``.  An index list in rank order therefore logs the
right documents under the wrong ``doc_id``; the export writes them sorted.

Here: a pool of 32 documents (a local jsonl, the task's ``data_files`` too),
a random probe set (rank order not sorted), exported by the CLI, evaluated by
``lm_eval.simple_evaluate`` with a 2-layer GPT-2 built from a config and a
word-level tokenizer trained in memory.  Nothing is downloaded.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download anything
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import json

import pytest

lm_eval = pytest.importorskip("lm_eval", reason="lm-evaluation-harness (lm_eval) is not installed")
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from probekit.cli import main as probekit_cli  # noqa: E402
from probekit.export import read_lm_eval  # noqa: E402
from probekit.pool import Pool  # noqa: E402
from probekit.probeset import ProbeSet  # noqa: E402

TASK = "probekit_roundtrip"
N_DOCS, N_PROBES = 32, 12
WORDS = ["red", "green", "blue", "cat", "dog", "bird", "runs", "sleeps", "sings", "fast", "slow", "loud"]


def documents() -> list[dict]:
    return [{"id": f"doc{k}", "text": f"the {WORDS[k % 12]} {WORDS[(k * 5) % 12]} {WORDS[(k * 7) % 12]}",
             "target": WORDS[(k * 3) % 12]} for k in range(N_DOCS)]


def tiny_lm():
    """A 2-layer GPT-2 with random weights and a word-level tokenizer: no download."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(WORDS + ["the"], trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<eos>"]))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                                     eos_token="<eos>", bos_token="<eos>", model_max_length=32)
    config = transformers.GPT2Config(vocab_size=core.get_vocab_size(), n_positions=32, n_embd=32, n_layer=2,
                                     n_head=2, bos_token_id=2, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).eval(), tokenizer


def test_logged_doc_ids_are_the_evaluated_documents(tmp_path, monkeypatch, one_torch_thread):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    docs_path = tmp_path / "docs.jsonl"
    docs_path.write_text("".join(json.dumps(d) + "\n" for d in documents()))  # row k = document k

    probes, samples = tmp_path / "probes.parquet", tmp_path / "samples.json"
    assert probekit_cli(["select", "--strategy", "random", "--n", str(N_PROBES), "--seed", "3",
                         "--data", str(docs_path), "--id-field", "id", "--out", str(probes)]) == 0
    assert probekit_cli(["export", str(probes), "--format", "lm-eval", "--task", TASK, "--out", str(samples)]) == 0
    ranked = ProbeSet.load(probes)
    assert ranked.indices.tolist() != sorted(ranked.indices.tolist())  # else the test could not fail
    indices = json.loads(samples.read_text())[TASK]

    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    config = {  # YAML is a superset of JSON
        "task": TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(docs_path)}, "cache_dir": str(tmp_path / "hf-cache")},
        "test_split": "test",
        "output_type": "loglikelihood",
        "doc_to_text": "{{text}}",
        "doc_to_target": " {{target}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
    (tasks_dir / f"{TASK}.yaml").write_text(json.dumps(config, indent=2))

    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    model, tokenizer = tiny_lm()
    results = lm_eval.simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, device="cpu"),
        tasks=[TASK], task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False),  # 8 s less
        samples={TASK: indices}, log_samples=True,
    )
    logged = results["samples"][TASK]

    pool = Pool.from_file(docs_path, id_field="id")
    expected = sorted(ranked.indices.tolist())
    assert sorted(s["doc_id"] for s in logged) == expected  # the probe set's documents, each once
    wrong = [(s["doc_id"], s["doc"]["id"]) for s in logged if pool.ids[s["doc_id"]] != s["doc"]["id"]]
    assert not wrong, f"{len(wrong)} of {len(logged)} logged samples carry another document's doc_id: {wrong[:4]}"
    assert {s["doc"]["id"] for s in logged} == set(ranked.ids)

    back = read_lm_eval(samples, pool)  # pool order: the order the harness logged them in
    assert back.indices.tolist() == expected == [s["doc_id"] for s in logged]
    assert list(back.ids) == [pool.ids[i] for i in expected]
