"""The live monitor on a small MLP: what it measures, that it never raises, sinks, state, errors."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from probekit.alarms import make_rule  # noqa: E402
from probekit.errors import ProbekitUsageError  # noqa: E402
from probekit.monitor import JSONLSink, Monitor, MonitorWarning, TensorBoardSink  # noqa: E402
from probekit.rdm import DynamicalRDM  # noqa: E402


def _setup(seed=0, n=48):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Dropout(0.5), torch.nn.Linear(16, 3))
    x = torch.randn(n, 6, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return model, x, y


def _train(model, x, y, steps, monitor=None, lr=0.3):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for step in range(steps):
        if monitor is not None:
            monitor.step(step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_records_are_the_eval_mode_losses_and_the_2rdm_of_them(one_torch_thread):
    model, x, y = _setup()
    model[1].eval()  # a frozen submodule: must stay in eval mode after each record
    seen, expected_records = [], []

    def expected_losses(model, batch):  # keeps what it hands the monitor; asserts the pass is in eval mode
        inputs, targets = batch
        assert not model.training and not model[2].training
        out = F.cross_entropy(model(inputs), targets, reduction="none")
        expected_records.append(out.double().numpy().copy())
        return out

    mon = Monitor(model, (x, y), expected_losses, every=3, window=5, sinks=[type("S", (), {"write": lambda s, r: seen.append(r)})()])
    _train(model, x, y, 40, mon)
    assert [r.step for r in seen] == list(range(0, 40, 3))
    assert model.training and not model[1].training and model[2].training  # flags restored module by module
    rdm = DynamicalRDM(5)
    for rec, losses in zip(seen, expected_records):
        rdm.update(losses, step=rec.step)
        stats = rdm.compute()
        assert rec.mean_loss == pytest.approx(losses.mean(), rel=1e-12)
        assert rec.ready == (stats is not None)
        if stats is not None:
            assert (rec.shc, rec.pr, rec.trace) == (stats.shc, stats.pr, stats.trace)
    assert mon.counters["records"] == mon.counters["admitted"] == len(seen) == 14


def test_builtin_classification_loss_and_chunks_match(one_torch_thread):
    model, x, y = _setup()
    whole = Monitor(model, (x, y), "classification", every=1, window=4)
    chunked = Monitor(model, (x, y), "classification", every=1, window=4, batch_size=7)
    whole.record(0)
    chunked.record(0)
    model.eval()
    expected = F.cross_entropy(model(x), y, reduction="none").detach().double().numpy()
    np.testing.assert_allclose(whole.rdm.window_records()[0], expected, rtol=1e-6)
    np.testing.assert_allclose(chunked.rdm.window_records()[0], expected, rtol=1e-6)


def test_step_records_once_per_multiple():
    model, x, y = _setup()
    mon = Monitor(model, (x, y), "classification", every=4, window=3)
    assert mon.step(0) is not None and mon.step(0) is None  # a step number is recorded once
    assert mon.step(1) is None and mon.step(4) is not None and mon.step(6) is None
    with pytest.raises(ProbekitUsageError, match=r"The 'every' parameter of Monitor must be an int in the range \[1, inf\)\. Got 0 instead\."):
        mon.every = 0


def test_alarm_fires_on_a_planted_transition_and_the_callback_raises_the_record_rate():
    n = 32
    model = torch.nn.Linear(1, 1, bias=False)  # the probes' losses are read from a script, not a model
    script = np.ones((200, n))
    rng = np.random.default_rng(0)
    script += 0.001 * rng.normal(size=script.shape)
    script[40:, : n // 2] += np.linspace(0, 5, 160)[:, None] ** 2  # from record 40, half the probes move together
    record = {"i": 0}

    def scripted(model, batch):
        out = torch.as_tensor(script[record["i"]])
        record["i"] += 1
        return out

    events = []

    def record_faster(event):  # "checkpoint more frequently near transitions"
        events.append(event)
        event.monitor.every = 1

    mon = Monitor(model, torch.zeros(n, 1), scripted, every=2, window=10, on_alarm=record_faster)
    recorded = [s for s in range(200) if mon.step(s) is not None]
    first = mon.alarm_steps[0]
    assert 80 < first < 100  # record 40 is step 80; the window and the persistence add a few records
    assert [e.step for e in events] == mon.alarm_steps and events[0].stats.shc == events[0].record.shc
    assert recorded == list(range(0, first + 1, 2)) + list(range(first + 1, 200))


class _Boom:
    def write(self, record):
        raise OSError(28, "No space left on device")


def test_failures_become_warnings_and_counters_training_goes_on(tmp_path):
    model, x, y = _setup()
    calls = {"n": 0}

    def flaky(model, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("probe batch exploded")
        out = F.cross_entropy(model(batch[0]), batch[1], reduction="none")
        if calls["n"] == 3:
            out[0] = float("nan")
        return out

    def bad_callback(event):
        raise KeyError("no checkpoint dir")

    jsonl = tmp_path / "m.jsonl"
    always = make_rule("running-min", ratio=0.5)  # scores are >= 1: every scored record exceeds, the callback runs
    mon = Monitor(model, (x, y), flaky, every=1, window=3, sinks=[_Boom(), JSONLSink(jsonl)], on_alarm=bad_callback,
                  alarm=always)
    with pytest.warns(MonitorWarning) as caught:
        _train(model, x, y, 12, mon)
    messages = " | ".join(str(w.message) for w in caught)
    assert "the probe pass failed (RuntimeError: probe batch exploded)" in messages
    assert "non-finite probe losses at step 2 (1 of 48)" in messages
    assert "sink _Boom failed at step 0 (OSError: [Errno 28] No space left on device)" in messages
    assert "on_alarm raised" in messages and "KeyError" in messages
    assert len(caught) == 4  # the first of each kind only
    assert mon.counters == {"records": 12, "admitted": 10, "failed_batches": 1, "nonfinite_records": 1,
                            "sink_errors": 12, "callback_errors": len(mon.alarm_steps), "record_errors": 0}
    lines = [json.loads(s) for s in jsonl.read_text().splitlines()]
    assert [d["step"] for d in lines] == list(range(12)) and [d["ok"] for d in lines[:4]] == [True, False, False, True]
    assert lines[1]["mean_loss"] is None  # NaN written as null: every line is strict JSON


def test_state_dict_resumes_the_window_and_the_alarm(tmp_path):
    model, x, y = _setup()
    full = Monitor(model, (x, y), "classification", every=1, window=6, alarm="zscore")
    _train(model, x, y, 15, full)
    torch.save(full.state_dict(), tmp_path / "state.pt")
    resumed = Monitor(model, (x, y), "classification", every=1, window=6, alarm="zscore")
    resumed.load_state_dict(torch.load(tmp_path / "state.pt"))  # torch.load's defaults (weights_only=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    for step in range(15, 25):  # both read the same weights: every record after the resume agrees
        expected, got = full.record(step), resumed.record(step)
        assert expected is not None and got.as_dict() == expected.as_dict()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert resumed.counters == full.counters and resumed.counters["records"] == 25
    assert resumed.alarm_steps == full.alarm_steps
    assert np.array_equal(resumed.rdm.window_records(), full.rdm.window_records())
    other = Monitor(model, (x, y), "classification", every=1, window=7)
    with pytest.raises(ProbekitUsageError, match=r"the state was saved by a monitor with .*'window': 6.*but this one has .*'window': 7"):
        other.load_state_dict(full.state_dict())
    with pytest.raises(ProbekitUsageError, match=r"Monitor.load_state_dict takes what Monitor.state_dict\(\) returned"):
        other.load_state_dict({"rdm": {}})


def test_tensorboard_sink_writes_the_scalars_and_alarm_events(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, x, y = _setup()
    records = []
    always = make_rule("running-min", ratio=0.5)  # scores are >= 1: fires once the persistence is met
    mon = Monitor(model, (x, y), "classification", every=2, window=4, alarm=always,
                  sinks=[TensorBoardSink(tmp_path / "tb"), type("S", (), {"write": lambda s, r: records.append(r)})()])
    _train(model, x, y, 30, mon)
    mon.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"probekit/shc", "probekit/pr", "probekit/mean_loss", "probekit/alarm", "probekit/eig_0"} <= tags
    shc = {e.step: e.value for e in acc.Scalars("probekit/shc")}
    expected = {r.step: r.shc for r in records if r.ready}
    assert sorted(shc) == sorted(expected)
    assert all(shc[s] == pytest.approx(expected[s], rel=1e-6) for s in shc)  # float32 in the event file
    alarms = [e.step for e in acc.Scalars("probekit/alarm") if e.value == 1.0]
    assert alarms == mon.alarm_steps and len(alarms) == 1
    texts = acc.Tensors("probekit/alarms/text_summary")
    assert [t.step for t in texts] == mon.alarm_steps


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"every": 0}, r"The 'every' parameter of Monitor must be an int in the range \[1, inf\)\. Got 0 instead\."),
        ({"window": 1}, r"The 'window' parameter of Monitor must be an int in the range \[2, inf\)\. Got 1 instead\."),
        ({"signal": "pr"}, r"The 'signal' parameter of Monitor must be one of .*Got 'pr' instead\."),
        ({"alarm": "zscor"}, r"Unknown alarm rule 'zscor'\. Did you mean: zscore\?"),
        ({"alarm": 3}, r"The 'alarm' parameter of Monitor must be a rule name, an AlarmRule or None\. Got 3 instead\."),
        ({"sinks": [object()]}, r"sinks\[0\] has no write\(record\) method"),
        ({"on_alarm": 5}, r"The 'on_alarm' parameter of Monitor must be a callable or None\. Got 5 instead\."),
        ({"autocast": "bf16"}, r"The 'autocast' parameter of Monitor must be a torch.dtype .*Got 'bf16' instead\."),
        ({"loss_fn": "mse"}, r"The 'loss_fn' parameter of Monitor must be one of classification, regression, causal_lm"),
        ({"probes": (torch.zeros(4, 2), torch.zeros(5))}, r"must have the same dim 0 .*probes\[0\]: 4, probes\[1\]: 5"),
        ({"probes": "text"}, r"The probe batch must hold at least one tensor"),
        ({"probe_ids": ["a"]}, r"probe_ids has 1 names for 48 probes"),
        ({"model": "gpt2"}, r"The 'model' parameter of Monitor must be a torch.nn.Module\. Got str instead\."),
        ({"distributed": True}, r"Monitor\(distributed=True\) needs an initialised torch.distributed process group"),
        ({"distributed": "yes"}, r"The 'distributed' parameter of Monitor must be 'auto', True or False\. Got 'yes' instead\."),
        ({"batch_size": 0}, r"The 'batch_size' parameter of Monitor must be None or an int in the range \[1, inf\)\. Got 0"),
    ],
)
def test_configuration_errors_raise_at_construction(kwargs, message):
    model, x, y = _setup()
    args = {"model": model, "probes": (x, y), "loss_fn": "classification"}
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    with pytest.raises(ProbekitUsageError, match=message):
        Monitor(args["model"], args["probes"], args["loss_fn"], **kwargs)


def test_autocast_is_respected(one_torch_thread):
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 2)

        def forward(self, x):
            seen.append(torch.is_autocast_enabled("cpu"))
            return self.lin(x)

    model = Probe()
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    bf16 = Monitor(model, (x, y), "classification", every=1, window=3, autocast=torch.bfloat16)
    rec = bf16.record(0)
    assert seen == [True] and rec.ok
    model.eval()
    expected = F.cross_entropy(model(x), y, reduction="none").detach().double().numpy()
    np.testing.assert_allclose(bf16.rdm.window_records()[0], expected, rtol=0.05)  # bf16 logits, float32 loss
    plain = Monitor(model, (x, y), "classification", every=1, window=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the caller's autocast state carries into the pass
        plain.record(0)
    off = Monitor(model, (x, y), "classification", every=1, window=3, autocast=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        off.record(0)
    assert seen[-2:] == [True, False]


def test_jsonl_sink_appends_across_a_resume(tmp_path):
    model, x, y = _setup()
    path = tmp_path / "sub" / "m.jsonl"
    sink = JSONLSink(path)
    assert not path.exists()  # constructing writes nothing
    mon = Monitor(model, (x, y), "classification", every=1, window=3, sinks=[sink])
    for s in range(3):
        mon.record(s)
    mon.close()
    again = Monitor(model, (x, y), "classification", every=1, window=3, sinks=[JSONLSink(path)])
    again.load_state_dict(mon.state_dict())
    again.record(3)
    again.close()
    lines = [json.loads(s) for s in path.read_text().splitlines()]
    assert [d["step"] for d in lines] == [0, 1, 2, 3] and [d["record"] for d in lines] == [0, 1, 2, 3]
    assert lines[2]["ready"] and lines[3]["shc"] is not None


def test_monitor_warning_is_a_probekit_warning():
    from probekit.errors import ProbekitWarning

    assert issubclass(MonitorWarning, ProbekitWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, x, y = _setup()
        Monitor(model, (x, y), "classification").record(0)  # a healthy record warns nothing


def test_a_diverged_model_is_counted_and_warnings_as_errors_never_escape(monkeypatch):
    model, x, y = _setup()
    mon = Monitor(model, (x, y), "classification", every=1, window=3)
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))  # every loss NaN: the pass ran, the model diverged
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # -W error: a warning raised here would reach the training loop
        rec = mon.record(0)
        assert rec is not None and not rec.ok
        monkeypatch.setattr(mon.rdm, "compute", lambda: (_ for _ in ()).throw(RuntimeError("broken statistic")))
        with torch.no_grad():
            model[0].weight.normal_()
        assert mon.record(1) is None  # the record failed inside; nothing raised
        assert mon.step(None) is None  # a bad step number: a warning, not an exception
    assert mon.counters["nonfinite_records"] == 1 and mon.counters["record_errors"] == 1


def test_check_raises_what_a_record_would_only_warn():
    model, x, y = _setup()
    Monitor(model, (x, y), "classification").check()  # fits: no error
    with pytest.raises(ProbekitUsageError, match=r"a dict batch must have a 'labels' key"):
        Monitor(model, {"x": x}, "classification").check()
    wrong = Monitor(model, (x, y), lambda m, b: torch.zeros(3))
    with pytest.raises(ProbekitUsageError, match=r"loss_fn must return one loss per probe, shape \(48,\); got torch.Size\(\[3\]\)"):
        wrong.check()
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    with pytest.raises(ProbekitUsageError, match=r"Monitor.check: 48 of 48 probe losses are NaN or inf"):
        Monitor(model, (x, y), "classification").check()


def test_set_every_restarts_the_window_and_the_alarm():
    model, x, y = _setup()
    mon = Monitor(model, (x, y), "classification", every=5, window=3, alarm="zscore")
    for s in range(0, 30, 5):
        mon.step(s)
    assert mon.rdm.ready and mon._online.n_records == 6
    mon.set_every(1)
    assert mon.every == 1 and mon.rdm.n_records == 0 and mon._online.n_records == 0
    assert mon.counters["records"] == 6  # history is kept
    mon.step(31)
    mon.set_every(2, restart=False)
    assert mon.rdm.n_records == 1 and mon.every == 2
