"""``probekit record``: a user's checkpoints x pool -> a trajectory the reference store opens.

The recorded losses are checked against bare loops written here (a model loaded with
transformers or torch directly, one example at a time, ``F.cross_entropy``), never against the
code under test.
"""
from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import torch.nn.functional as F  # noqa: E402

from probekit.cli import main  # noqa: E402
from probekit.errors import ProbekitUsageError  # noqa: E402
from probekit.eval.families.ground_truth import OrderParameter, find_transition  # noqa: E402
from probekit.eval.store.trajectory import Trajectory  # noqa: E402
from probekit.record import CheckpointGoneError, record, record_run  # noqa: E402
from record_runs import MLP_STEPS, lm_rows, lm_run, mlp_rows, mlp_run, tokenizer  # noqa: E402
from workspace import one_error_line, snapshot  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def lm(tmp_path_factory, one_torch_thread):
    return lm_run(tmp_path_factory.mktemp("lm"))


@pytest.fixture(scope="module")
def mlp(tmp_path_factory, one_torch_thread):
    return mlp_run(tmp_path_factory.mktemp("mlp"))


def _bare_lm_losses(run):
    """[checkpoints, pool] next-token cross-entropy, each text alone (no padding), by a plain loop."""
    tok = tokenizer()
    out = []
    for d in sorted(run.iterdir(), key=lambda p: int(p.name.split("-")[1])):
        model = transformers.GPT2LMHeadModel.from_pretrained(d).eval()
        row = []
        with torch.no_grad():
            for r in lm_rows():
                ids = torch.tensor(tok(r["text"])["input_ids"])
                logits = model(ids[None]).logits[0]
                row.append(F.cross_entropy(logits[:-1], ids[1:]).item())
        out.append(row)
    return np.array(out)


def _mlp_model(path, root):
    import importlib.util

    from safetensors.torch import load_file

    spec = importlib.util.spec_from_file_location("record_test_expected", root / "mymodels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build()
    model.load_state_dict(load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path))
    return model.eval()


def _bare_mlp(ckpt, rows):
    """([checkpoints, n] cross-entropy, [checkpoints, n] correct) of the MLP on ``rows``, by a plain loop."""
    x = torch.tensor([[r["x1"], r["x2"], r["x3"]] for r in rows], dtype=torch.float32)
    y = torch.tensor([r["y"] for r in rows])
    losses, correct = [], []
    for path in sorted(ckpt.iterdir()):
        with torch.no_grad():
            logits = _mlp_model(path, ckpt.parent)(x)
        losses.append(F.cross_entropy(logits, y, reduction="none").numpy())
        correct.append((logits.argmax(1) == y).float().numpy())
    return np.array(losses), np.array(correct)


def _mlp_options(mlp, **more):
    return dict(loss="classification", model_factory=f"{mlp.parent / 'mymodels.py'}:build",
                input_field=["x1", "x2", "x3"], target_field="y", id_field="id", batch_size=16, **more)


# -- what is recorded -------------------------------------------------------------------------
def test_trainer_output_causal_lm_matches_a_bare_loop(lm, tmp_path):
    out = tmp_path / "traj"
    traj = record(lm, lm.parent / "pool.jsonl", out, text_field="text", id_field="uid", batch_size=8)
    expected = _bare_lm_losses(lm)
    np.testing.assert_allclose(traj.losses, expected, rtol=2e-5, atol=2e-6)
    reopened = Trajectory(out)  # what every reader of a reference trajectory does: opens and verifies
    m = reopened.manifest
    assert m["kind"] == "user" and m["preset"] == "user" and m["name"] == "traj"
    assert reopened.steps.tolist() == [0, 4, 8, 12]
    assert reopened.checkpoints == {"selection": 0}
    assert reopened.transitions == []
    np.testing.assert_allclose(reopened.baselines["mean_loss"], expected.mean(axis=1), rtol=2e-5)
    assert reopened.pool.ids.tolist() == [r["uid"] for r in lm_rows()]
    assert [c["step"] for c in m["config"]["checkpoints"]] == [0, 4, 8, 12]
    assert m["config"]["loader"]["model_class"] == "transformers:AutoModelForCausalLM"
    assert not (tmp_path / "traj.partial").exists()
    # the selection checkpoint loads again from where it is: the same weights
    model = reopened.model("selection")
    want = transformers.GPT2LMHeadModel.from_pretrained(lm / "checkpoint-0").state_dict()
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())


def test_state_dict_files_with_a_factory_match_a_bare_loop(mlp, tmp_path):
    traj = record(mlp, mlp.parent / "pool.jsonl", tmp_path / "traj", **_mlp_options(mlp))
    expected, _ = _bare_mlp(mlp, mlp_rows(48, 0))
    np.testing.assert_allclose(traj.losses, expected, rtol=1e-6, atol=1e-7)
    assert traj.steps.tolist() == MLP_STEPS
    assert traj.manifest["source"]["selection"]["path"].endswith("step-0000.pt")


def test_models_in_memory_are_recorded_and_hashed_by_their_weights(mlp, tmp_path):
    paths = sorted(mlp.iterdir())[:4]
    pairs = [(s, _mlp_model(p, mlp.parent)) for s, p in zip(MLP_STEPS, paths)]
    opts = _mlp_options(mlp)
    del opts["model_factory"]
    traj = record(iter(pairs), mlp.parent / "pool.jsonl", tmp_path / "traj", **opts)
    expected, _ = _bare_mlp(mlp, mlp_rows(48, 0))
    np.testing.assert_allclose(traj.losses, expected[:4], rtol=1e-6, atol=1e-7)
    hashes = [c["sha256"] for c in traj.manifest["config"]["checkpoints"]]
    assert len(set(hashes)) == 4
    again = record_run(iter(pairs), mlp.parent / "pool.jsonl", tmp_path / "traj", **opts)
    assert again.up_to_date and again.computed == 0
    with pytest.raises(CheckpointGoneError, match="recorded from a model in memory; there is no file to load it from"):
        traj.model("selection")


def test_a_glob_of_model_directories_with_a_sequence_classifier(tmp_path, one_torch_thread):
    tok = tokenizer()
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32, n_positions=32, num_labels=2,
                                     pad_token_id=0)
    rows = [dict(r, label=i % 2) for i, r in enumerate(lm_rows())]
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for step in (10, 20, 30):
        torch.manual_seed(step)
        transformers.GPT2ForSequenceClassification(config).save_pretrained(tmp_path / "runs" / f"step-{step}")
    tok.save_pretrained(tmp_path / "tok")
    traj = record(str(tmp_path / "runs" / "step-*"), tmp_path / "pool.jsonl", tmp_path / "traj", loss="classification",
                  input_field="text", target_field="label", tokenizer=tmp_path / "tok", batch_size=8)
    assert traj.steps.tolist() == [10, 20, 30]
    assert traj.manifest["config"]["loader"]["model_class"] == "transformers:AutoModelForSequenceClassification"
    expected = []
    for step in (10, 20, 30):
        model = transformers.GPT2ForSequenceClassification.from_pretrained(tmp_path / "runs" / f"step-{step}").eval()
        with torch.no_grad():
            expected.append([F.cross_entropy(model(torch.tensor([tok(r["text"])["input_ids"]])).logits,
                                             torch.tensor([r["label"]])).item() for r in rows])
    np.testing.assert_allclose(traj.losses, expected, rtol=2e-5, atol=2e-6)


def _squared_error_of_the_first_output(model, batch):  # a custom loss: (model, batch) -> [b]
    x, y = batch
    return (model(x)[:, 0] - y) ** 2


@pytest.mark.parametrize("loss", ["regression", "custom"])
def test_regression_and_a_custom_loss_on_models_in_memory(tmp_path, loss, one_torch_thread):
    rows = mlp_rows(40, 2)
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(dict(r, t=2 * r["x1"] - r["x3"])) + "\n" for r in rows))
    torch.manual_seed(0)
    models = [torch.nn.Linear(3, 1) for _ in range(3)]
    traj = record([(s, m) for s, m in zip((0, 5, 9), models)], tmp_path / "pool.jsonl", tmp_path / "traj",
                  loss="regression" if loss == "regression" else _squared_error_of_the_first_output,
                  input_field=["x1", "x2", "x3"], target_field="t", batch_size=16)
    x = torch.tensor([[r["x1"], r["x2"], r["x3"]] for r in rows])
    t = torch.tensor([2 * r["x1"] - r["x3"] for r in rows])
    with torch.no_grad():
        expected = [((m(x)[:, 0] - t) ** 2).numpy() for m in models]
    np.testing.assert_allclose(traj.losses, expected, rtol=1e-5, atol=1e-6)
    if loss == "custom":
        assert traj.manifest["config"]["loss"] == "test_record:_squared_error_of_the_first_output"


# -- transitions ------------------------------------------------------------------------------
def test_order_parameters_give_the_reference_rule_onsets(mlp, tmp_path):
    rows, evals = mlp_rows(48, 0), mlp_rows(30, 1)
    traj = record(mlp, mlp.parent / "pool.jsonl", tmp_path / "traj", **_mlp_options(
        mlp, order_parameters=["loss:group=a", f"accuracy:eval={mlp.parent / 'eval.jsonl'}"]))
    losses, _ = _bare_mlp(mlp, rows)
    _, eval_correct = _bare_mlp(mlp, evals)
    in_a = np.array([r["group"] == "a" for r in rows])
    expected = {"loss:group=a": losses[:, in_a].mean(axis=1), "accuracy:eval=eval.jsonl": eval_correct.mean(axis=1)}
    ops = traj.order_parameters
    assert sorted(ops) == sorted(expected)
    steps = np.array(MLP_STEPS)
    for name, series in expected.items():
        np.testing.assert_allclose(ops[name], series, rtol=1e-6, atol=1e-7)
        # the documented defaults: edge = a tenth of the records (1 here), min change 0.1 for an
        # accuracy, else 10% of the larger of the start and end values
        change = 0.1 if name.startswith("accuracy") else 0.1 * max(abs(series[0]), abs(series[-1]))
        want = find_transition(OrderParameter(name, "", change, edge_records=1), steps, series)
        got = next(t for t in traj.transitions if t.name == name)
        assert (got.onset_step, got.midpoint_step) == (want.onset_step, want.midpoint_step)
        assert 0 < got.onset_step <= got.midpoint_step < 900  # a transition in the middle of the run


def test_onset_by_hand_and_order_csv(mlp, tmp_path):
    given = record(mlp, mlp.parent / "pool.jsonl", tmp_path / "given", **_mlp_options(mlp, onset=400, midpoint=500))
    (t,) = given.transitions
    assert (t.name, t.onset_step, t.midpoint_step, t.rule) == ("given", 400, 500, "given by hand")
    assert math.isnan(t.start_value) and math.isnan(t.end_value)
    csv_steps = np.arange(0, 901, 50)
    csv_values = 1 / (1 + np.exp(-(csv_steps - 450) / 60))
    (tmp_path / "acc.csv").write_text("step,val_acc\n" + "".join(f"{s},{v}\n" for s, v in zip(csv_steps, csv_values)))
    traj = record(mlp, mlp.parent / "pool.jsonl", tmp_path / "csv", **_mlp_options(mlp, order_csv=tmp_path / "acc.csv"))
    (t,) = traj.transitions
    # worked out by hand: the series goes from 0.00055 to 0.99945, so 10% of the way is 0.1004, first held at
    # step 350 (0.159; step 300 gives 0.076), and 50% is 0.5, reached at step 450 (the sigmoid's centre)
    assert (t.name, t.onset_step, t.midpoint_step) == ("val_acc", 350, 450)
    np.testing.assert_allclose(traj.order_parameters["val_acc"], 1 / (1 + np.exp(-(np.array(MLP_STEPS) - 450) / 60)))


def test_a_csv_transition_outside_the_checkpoints_is_refused(mlp, tmp_path):
    csv_steps = np.arange(0, 3001, 50)
    values = 1 / (1 + np.exp(-(csv_steps - 1500) / 60))  # onset ~1400, past the last checkpoint (900)
    (tmp_path / "late.csv").write_text("step,acc\n" + "".join(f"{s},{v}\n" for s, v in zip(csv_steps, values)))
    with pytest.raises(ProbekitUsageError, match=r"^--order-csv 'acc': its onset at step 1400 is outside the recorded "
                                                 r"checkpoints' steps 0\.\.900; record checkpoints that span"):
        record(mlp, mlp.parent / "pool.jsonl", tmp_path / "late", **_mlp_options(mlp, order_csv=tmp_path / "late.csv"))


def test_an_order_parameter_that_never_crosses_is_one_error(mlp, tmp_path, capsys):
    argv = ["record", "--checkpoints", str(mlp), "--model-factory", f"{mlp.parent / 'mymodels.py'}:build",
            "--loss", "classification", "--data", str(mlp.parent / "pool.jsonl"), "--id-field", "id",
            "--input-field", "x1", "--input-field", "x2", "--input-field", "x3", "--target-field", "y",
            "--out", str(tmp_path / "t"), "--order-parameter", "loss:group=a", "--min-change", "50"]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert re.search(r"--order-parameter 'loss:group=a' never crosses its threshold: it goes from [\d.]+ \(median of "
                     r"the first 1 records\) to [\d.]+ \(median of the last 1\), a change of [\d.]+, below the minimum "
                     r"change 50 \(--min-change\)", line), line
    assert not (tmp_path / "t").exists()
    assert (tmp_path / "t.partial").is_dir()  # the losses are kept: a rerun with another --min-change is instant
    assert main(argv[:-2] + ["--min-change", "0.01"]) == 0
    assert "(0 computed, 10 reused)" in capsys.readouterr().out
    assert not (tmp_path / "t.partial").exists()


# -- resume, reuse -----------------------------------------------------------------------------
def _same_apart_from_wall_time(a, b):
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    for m in (ma, mb):
        del m["wall_seconds"], m["content_hash"]
    assert ma == mb
    assert (a / "losses.npy").read_bytes() == (b / "losses.npy").read_bytes()


def test_a_failed_recording_resumes_to_identical_bytes(mlp, tmp_path, monkeypatch):
    import probekit.record.sources as sources

    opts = _mlp_options(mlp, name="run", order_parameters=["accuracy:group=b"])
    straight = record(mlp, mlp.parent / "pool.jsonl", tmp_path / "straight", **opts)
    real, calls = sources.load_model, {"n": 0}

    def flaky(path, loader):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("disk went away\nsecond line")
        return real(path, loader)

    monkeypatch.setattr(sources, "load_model", flaky)
    with pytest.raises(ProbekitUsageError, match=r"checkpoint step 400 \(.*step-0400\.pt\) failed to load: "
                                                 r"RuntimeError: disk went away$"):
        record(mlp, mlp.parent / "pool.jsonl", tmp_path / "resumed", **opts)
    assert len(list((tmp_path / "resumed.partial").glob("*.npz"))) == 4 and not (tmp_path / "resumed").exists()
    monkeypatch.setattr(sources, "load_model", real)
    outcome = record_run(mlp, mlp.parent / "pool.jsonl", tmp_path / "resumed", **opts)
    assert (outcome.computed, outcome.reused) == (6, 4)
    assert not (tmp_path / "resumed.partial").exists()
    _same_apart_from_wall_time(straight.path, tmp_path / "resumed")


def test_a_killed_cli_recording_resumes(mlp, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    argv = ["record", "--checkpoints", str(mlp), "--model-factory", f"{mlp.parent / 'mymodels.py'}:build",
            "--loss", "classification", "--data", str(mlp.parent / "pool.jsonl"), "--id-field", "id",
            "--input-field", "x1", "--input-field", "x2", "--input-field", "x3", "--target-field", "y",
            "--name", "run"]
    env = dict(os.environ, RECORD_TEST_SLOW_AFTER="3", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "probekit", *argv, "--out", str(tmp_path / "killed")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while len(list((tmp_path / "killed.partial").glob("*.npz"))) < 3:
        if proc.poll() is not None or time.monotonic() > deadline:  # a failure must not leave it running
            proc.kill()
            pytest.fail(f"the recording did not stage 3 checkpoints in time: {proc.communicate()}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # stuck loading the 4th checkpoint
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"SIGTERM did not stop the recording: {proc.communicate()}")
    assert proc.returncode == 143 and err.strip() == "probekit record: terminated", err
    assert not (tmp_path / "killed").exists()
    assert main(argv + ["--out", str(tmp_path / "killed")]) == 0
    assert main(argv + ["--out", str(tmp_path / "straight")]) == 0
    _same_apart_from_wall_time(tmp_path / "straight", tmp_path / "killed")


def test_a_finished_trajectory_is_reused_and_extended(mlp, tmp_path, capsys):
    part = tmp_path / "part"
    part.mkdir()
    for p in sorted(mlp.iterdir())[:6]:
        shutil.copy(p, part / p.name)
    opts = _mlp_options(mlp, name="run")
    first = record_run(part, mlp.parent / "pool.jsonl", tmp_path / "traj", **opts)
    assert (first.computed, first.reused, first.up_to_date) == (6, 0, False)
    again = record_run(part, mlp.parent / "pool.jsonl", tmp_path / "traj", **opts)
    assert (again.computed, again.up_to_date) == (0, True)
    before = snapshot(tmp_path / "traj")
    with pytest.raises(ProbekitUsageError, match=r"already holds a trajectory recorded from other checkpoints or "
                                                 r"settings; pass --overwrite to replace it"):
        record(mlp, mlp.parent / "pool.jsonl", tmp_path / "traj", **opts)
    assert snapshot(tmp_path / "traj") == before
    more = record_run(mlp, mlp.parent / "pool.jsonl", tmp_path / "traj", overwrite=True, **opts)
    assert (more.computed, more.reused) == (4, 6)  # the shared checkpoints' losses come from the old trajectory
    expected, _ = _bare_mlp(mlp, mlp_rows(48, 0))
    np.testing.assert_allclose(more.trajectory.losses, expected, rtol=1e-6, atol=1e-7)
    other = record_run(mlp, mlp.parent / "pool.jsonl", tmp_path / "traj", overwrite=True,
                       **_mlp_options(mlp, name="run", onset=300))  # another transition spec: nothing recomputed
    assert (other.computed, other.reused) == (0, 10) and other.trajectory.transitions[0].onset_step == 300


def test_the_selection_checkpoint_must_still_be_there_and_the_same(mlp, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(mlp, ckpt)
    traj = record(ckpt, mlp.parent / "pool.jsonl", tmp_path / "traj", selection_checkpoint=200, **_mlp_options(mlp))
    assert traj.checkpoints == {"selection": 200}
    want = torch.load(ckpt / "step-0200.pt")
    assert all(torch.equal(v, want[k]) for k, v in traj.state_dict("selection").items())
    torch.save({k: v + 1 for k, v in want.items()}, ckpt / "step-0200.pt")
    with pytest.raises(CheckpointGoneError, match=r"checkpoint 'selection' \(step 200\) at .*step-0200\.pt has "
                                                  r"changed since it was recorded \(sha256 \w{12}, recorded \w{12}\)"):
        traj.model("selection")
    (ckpt / "step-0200.pt").unlink()
    with pytest.raises(CheckpointGoneError, match=r"checkpoint 'selection' \(step 200\) is gone: .* does not exist"):
        traj.model("selection")


# -- input errors -----------------------------------------------------------------------------
def test_a_tokenizer_larger_than_the_embedding_is_a_mismatch(tmp_path, capsys, one_torch_thread):
    small = lm_run(tmp_path / "small", steps=(0, 1), vocab_size=12)  # the tokenizer has 21 tokens
    before = snapshot(tmp_path / "small")
    capsys.readouterr()
    assert main(["record", "--checkpoints", str(small), "--data", str(tmp_path / "small" / "pool.jsonl"),
                 "--text-field", "text", "--out", str(tmp_path / "t")]) == 2
    line = one_error_line(capsys)
    assert re.search(r"tokenizer mismatch: the tokenizer \(.*checkpoint-0\) has 21 tokens but checkpoint step 0 "
                     r"\(.*checkpoint-0\) embeds 12; give the run's own tokenizer with --tokenizer", line), line
    assert snapshot(tmp_path / "small") == before and not (tmp_path / "t").exists()
    assert not (tmp_path / "t.partial").exists()


@pytest.mark.parametrize("extra,pattern", [
    (["--text-field", "prompt"], r"column 'prompt' \(--text-field\) is not in pool .*pool\.jsonl; its columns: uid, "
                                 r"text, topic"),
    (["--order-parameter", "loss:topic=nope"], r"slice 'topic=nope' matches no example of the pool"),
    (["--order-parameter", "speed:topic=rare"], r"--order-parameter must be METRIC:WHERE with METRIC one of loss, "
                                                r"accuracy"),
    (["--onset", "4", "--order-parameter", "loss:topic=rare"], r"give one of --onset, --order-csv and "
                                                               r"--order-parameter; got --onset and --order-parameter"),
    (["--onset", "99"], r"--onset 99 is outside the recorded steps 0\.\.12"),
    (["--selection-checkpoint", "5"],
     r"--selection-checkpoint 5 is not a checkpoint's step; the steps are 0, 4, 8, 12"),
    (["--steps", "1", "2"], r"--steps gives 2 steps for 4 checkpoints"),
    (["--loss", "nope"], r"--loss must be one of classification, regression, causal_lm or MODULE:FUNCTION"),
    (["--model-class", "transformers:NoSuchModel"],
     r"--model-class 'transformers:NoSuchModel': 'transformers' has no attribute 'NoSuchModel'\.$"),
    (["--device", "gpu!"], r"--device must be a torch device such as 'cpu' or 'cuda:0'\. Got 'gpu!' instead\."),
    (["--device", f"cuda:{torch.cuda.device_count() + 3}"],
     r"--device names 'cuda:\d+', but torch sees \d+ CUDA device\(s\) here; give 'cpu' or a device that exists"),
])
def test_input_errors_are_one_line(lm, tmp_path, capsys, extra, pattern):
    before = snapshot(lm.parent)
    got = main(["record", "--checkpoints", str(lm), "--data", str(lm.parent / "pool.jsonl"), "--text-field", "text",
                "--out", str(tmp_path / "t"), *extra])
    line = one_error_line(capsys)
    assert got == 2 and line.startswith("probekit record: error: ") and re.search(pattern, line), line
    assert snapshot(lm.parent) == before and not (tmp_path / "t").exists() and not (tmp_path / "t.partial").exists()


def test_cli_records_a_trainer_output_with_an_order_parameter(lm, tmp_path, capsys):
    out = tmp_path / "traj"
    argv = ["record", "--checkpoints", str(lm), "--data", str(lm.parent / "pool.jsonl"), "--text-field", "text",
            "--id-field", "uid", "--out", str(out), "--order-parameter", "loss:topic=rare", "--batch-size", "7"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "recorded 4 checkpoints x 30 pool examples" in printed and "transition loss:topic=rare: onset" in printed
    expected = _bare_lm_losses(lm)
    rare = np.array([r["topic"] == "rare" for r in lm_rows()])
    np.testing.assert_allclose(Trajectory(out).order_parameters["loss:topic=rare"], expected[:, rare].mean(axis=1),
                               rtol=2e-5)
    assert main(argv) == 0
    assert "is up to date: 4 checkpoints x 30 pool examples; nothing to do" in capsys.readouterr().out



def test_the_documented_example_runs_as_written(tmp_path, monkeypatch, capsys, one_torch_thread):
    import runpy
    import shlex
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "record.md").read_text()
    blocks = re.findall(r"```(\w+)\n(.*?)```", doc, flags=re.S)
    train = next(body for lang, body in blocks if lang == "python" and body.startswith("# train.py"))
    commands = next(body for lang, body in blocks if lang == "bash" and body.startswith("python train.py"))
    printed = re.search(r"The record command prints \(times vary\):\n\n```\n(.*?)```", doc, flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(train)
    runpy.run_path("train.py", run_name="__main__")
    lines = [shlex.split(c.replace("\\\n", " "), comments=True)
             for c in re.split(r"(?<!\\)\n", commands) if c.startswith("probekit")]
    assert len(lines) == 4
    for argv in lines:
        assert main(argv[1:]) == 0, argv
        out = capsys.readouterr().out
        if argv[1] == "record":
            want = printed.splitlines()
            got = out.splitlines()
            assert re.fullmatch(re.sub(r"12\\.8", r"[\\d.]+", re.escape(want[0])), got[0]), (got, want)
            assert got[1:3] == want[1:3]
    assert main(lines[0][1:]) == 0
    assert capsys.readouterr().out.startswith("digits-run is up to date: 31 checkpoints x 1797 pool examples")
    api = next(body for lang, body in blocks if lang == "python" and body.startswith("from probekit.record"))
    scope: dict = {}
    exec(api, scope)  # the same recording from Python: up to date, and its selection model loads
    assert scope["traj"].transitions[0].onset_step == 20 and scope["traj"].losses.shape == (31, 1797)


def test_an_edited_model_factory_is_a_new_recording_from_any_directory(tmp_path, monkeypatch):
    """The factory's file is hashed into the recording's key (an edit records again) and kept as an
    absolute path (the selection model loads from any working directory)."""
    import torch

    from probekit.eval.store.trajectory import Trajectory

    (tmp_path / "models.py").write_text("import torch\n\ndef build():\n    return torch.nn.Linear(3, 2)\n")
    (tmp_path / "ckpt").mkdir()
    torch.manual_seed(0)
    for step in (0, 10, 20):
        torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "ckpt" / f"step-{step}.pt")
    rows = mlp_rows(12, 0)
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(tmp_path)
    options = dict(loss="classification", model_factory="models.py:build", input_field=["x1", "x2", "x3"],
                   target_field="y", id_field="id", onset=10, progress=False)
    first = record(str(tmp_path / "ckpt"), "pool.jsonl", tmp_path / "run", **options)
    assert first.manifest["source"]["selection"]["loader"]["factory"] == f"{tmp_path / 'models.py'}:build"
    (tmp_path / "models.py").write_text("import torch\n\ndef build():  # edited\n    return torch.nn.Linear(3, 2)\n")
    with pytest.raises(ProbekitUsageError, match=r"already holds a trajectory recorded from other checkpoints or "
                                                 r"settings; pass --overwrite"):
        record(str(tmp_path / "ckpt"), "pool.jsonl", tmp_path / "run", **options)
    monkeypatch.chdir(tmp_path / "ckpt")  # elsewhere: the selection model still loads
    assert isinstance(Trajectory(tmp_path / "run").model("selection"), torch.nn.Linear)


def test_steps_are_read_from_step_words_and_paired_with_paths_in_natural_order(tmp_path):
    import torch

    from probekit.record.sources import find_checkpoints

    state = torch.nn.Linear(2, 2).state_dict()
    for name in ("step=0-val_loss=0.70.pt", "step=20-val_loss=0.50.pt", "step=100-val_loss=0.40.pt"):
        torch.save(state, tmp_path / name)
    got = find_checkpoints(str(tmp_path / "step=*.pt"), model_factory="x.py:build", loss="classification")
    assert [(c.step, c.path.name) for c in got] == [(0, "step=0-val_loss=0.70.pt"), (20, "step=20-val_loss=0.50.pt"),
                                                    (100, "step=100-val_loss=0.40.pt")]
    plain = tmp_path / "plain"
    plain.mkdir()
    for n in (0, 10, 20, 100, 200):
        torch.save(state, plain / f"m-{n}.pt")
    got = find_checkpoints(str(plain / "m-*.pt"), steps=[0, 10, 20, 100, 200], model_factory="x.py:build",
                           loss="classification")
    assert [(c.step, c.path.name) for c in got] == [(0, "m-0.pt"), (10, "m-10.pt"), (20, "m-20.pt"), (100, "m-100.pt"),
                                                    (200, "m-200.pt")]
