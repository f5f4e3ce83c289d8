"""The Hugging Face adapter: a Trainer on a tiny GPT-2 built from a config (no download), with the callback."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # Trainer needs it

from probekit.errors import ProbekitUsageError  # noqa: E402
from probekit.monitor import Monitor, ProbekitCallback  # noqa: E402
from probekit.monitor.hf import STATE_FILE  # noqa: E402

VOCAB, LENGTH = 32, 16


def _model():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=LENGTH, n_embd=32, n_layer=1, n_head=2)
    return transformers.GPT2LMHeadModel(config)


def _corpus(n, seed):
    g = torch.Generator().manual_seed(seed)  # sequences counting up mod VOCAB from a random start
    starts = torch.randint(0, VOCAB, (n, 1), generator=g)
    return (starts + torch.arange(LENGTH)) % VOCAB


class _Dataset(torch.utils.data.Dataset):
    def __init__(self, ids):
        self.ids = ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _trainer(model, out, callback, max_steps, save_steps=None):
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=8, learning_rate=3e-3,
        report_to=[], use_cpu=True, logging_strategy="no", save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500, disable_tqdm=True, seed=0, dataloader_num_workers=0)
    return transformers.Trainer(model=model, args=args, train_dataset=_Dataset(_corpus(256, 1)), callbacks=[callback])


def test_trainer_drives_the_monitor_and_saves_its_state(tmp_path, one_torch_thread):
    model = _model()
    probes = {"input_ids": _corpus(24, 2)[:, :12], "attention_mask": torch.ones(24, 12, dtype=torch.long)}
    probes["attention_mask"][::3, 9:] = 0  # some probes padded: their losses skip those positions
    records = []
    sink = type("ListSink", (), {"write": lambda self, r: records.append(r)})()
    monitor = Monitor(model, probes, "causal_lm", every=2, window=4, sinks=[sink])
    callback = ProbekitCallback(monitor)
    _trainer(model, tmp_path, callback, max_steps=12, save_steps=6).train()
    assert [r.step for r in records] == list(range(0, 13, 2))  # the start, then every 2nd optimizer step
    assert all(r.ok for r in records) and records[-1].ready
    assert records[-1].mean_loss < records[0].mean_loss  # the model learns the counting corpus
    saved = tmp_path / "checkpoint-6" / STATE_FILE
    assert saved.exists() and (tmp_path / "checkpoint-12" / STATE_FILE).exists()

    # resume: a new process would rebuild the model and the monitor, load the state, resume the Trainer
    resumed_model = _model()
    resumed_records = []
    sink = type("ListSink", (), {"write": lambda self, r: resumed_records.append(r)})()
    fresh = Monitor(resumed_model, probes, "causal_lm", every=2, window=4, sinks=[sink])
    callback = ProbekitCallback(fresh)
    callback.load(tmp_path / "checkpoint-6")
    assert fresh.counters["records"] == 4 and fresh.rdm.window_steps().tolist() == [0, 2, 4, 6]
    _trainer(resumed_model, tmp_path, callback, max_steps=12).train(resume_from_checkpoint=str(tmp_path / "checkpoint-6"))
    assert [r.step for r in resumed_records] == [8, 10, 12]  # step 6 is not recorded twice
    assert [r.record for r in resumed_records] == [4, 5, 6] and fresh.rdm.window_steps().tolist() == [6, 8, 10, 12]
    for a, b in zip(resumed_records, records[4:]):  # the same training continued: the same losses
        assert a.mean_loss == pytest.approx(b.mean_loss, rel=1e-4)
    with pytest.raises(ProbekitUsageError, match=r"No probekit monitor state in .*expected probekit_monitor\.pt"):
        ProbekitCallback(fresh).load(tmp_path)
    with pytest.raises(ProbekitUsageError, match=r"ProbekitCallback takes a probekit Monitor\. Got dict instead\."):
        ProbekitCallback({})
