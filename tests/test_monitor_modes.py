"""The Monitor names the probes that move together at an alarm: texts, slice labels, over-represented slices."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from probekit.errors import ProbekitUsageError  # noqa: E402
from probekit.monitor import JSONLSink, Monitor, TensorBoardSink  # noqa: E402

N_PROBES, N_RARE, RECORDS, ONSET = 200, 5, 60, 40
TOPICS = ["rare"] * N_RARE + [("sports", "music", "cooking")[i % 3] for i in range(N_PROBES - N_RARE)]


class ScriptedLosses:
    """A loss function replaying a [records, probes] matrix, one row per record: only the 5 'rare' probes
    (0-4) drift, together, from record ONSET on; the rest is independent noise."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.matrix = 1.0 + 1e-3 * rng.normal(size=(RECORDS, N_PROBES))
        ramp = np.clip(np.arange(RECORDS) - ONSET, 0, None) * 0.05
        self.matrix[:, :N_RARE] += ramp[:, None] * np.array([1.0, 0.9, 0.8, 0.7, 0.6])
        self.t = 0

    def __call__(self, model, batch):  # batch: the probes' positions (the probe "batch" is arange(n))
        row = torch.from_numpy(self.matrix[self.t])[batch]
        self.t += 1
        return row


class FakeWriter:
    def __init__(self):
        self.texts = []

    def add_scalar(self, *a):
        pass

    def add_text(self, tag, text, step):
        self.texts.append(text)

    def flush(self):
        pass


def _run(tmp_path, **described):
    events, writer = [], FakeWriter()
    path = tmp_path / "records.jsonl"
    mon = Monitor(torch.nn.Linear(1, 1), torch.arange(N_PROBES), ScriptedLosses(), every=1, window=8,
                  sinks=[JSONLSink(path), TensorBoardSink(writer)], on_alarm=events.append, **described)
    for step in range(RECORDS):
        mon.step(step)
    mon.close()
    return mon, events, path, writer


def test_the_alarm_event_and_the_jsonl_line_name_the_rare_probes_and_their_slice(tmp_path):
    import json

    import pandas as pd

    ids = [f"p{i:03d}" for i in range(N_PROBES)]
    texts = [f"a {t} sentence,   number {i}" for i, t in enumerate(TOPICS)]
    mon, events, path, writer = _run(tmp_path, probe_ids=ids, probe_texts=texts, probe_labels={"topic": TOPICS},
                                     mode_top=5)
    assert events and mon.alarm_steps[0] > ONSET
    first = events[0]
    assert sorted(p.probe for p in first.mode.probes) == ids[:N_RARE]
    (excess,) = first.mode.over_represented
    assert excess.label == "topic=rare" and (excess.in_top, excess.top, excess.in_set) == (5, 5, 5)
    assert excess.p_value == pytest.approx(1 / math.comb(N_PROBES, N_RARE), rel=1e-12)
    assert excess.sentence().startswith("5 of the top 5 probes are topic=rare, 2.5% of the probes")

    frame = pd.read_json(path, lines=True)  # the JSONL consumer: every line whole
    assert len(frame) == RECORDS
    alarms = frame[frame["alarm"]]
    assert alarms["step"].tolist() == mon.alarm_steps
    assert frame.loc[~frame["alarm"], "mode"].isna().all()  # only alarm lines carry a mode
    mode = alarms["mode"].iloc[0]
    line = json.loads(path.read_text().splitlines()[int(alarms.index[0])])  # pandas' float parser rounds
    assert line["mode"] == first.mode.as_dict()
    assert [p["slices"]["topic"] for p in mode["top_probes"]] == ["rare"] * 5
    assert mode["top_probes"][0]["text"].startswith("a rare sentence, number ")  # whitespace collapsed
    assert mode["over_represented"][0]["text"] == excess.sentence()
    assert any("5 of the top 5 probes are topic=rare" in t for t in writer.texts)


def test_a_probe_sets_slices_label_the_probes(tmp_path):
    slices = ["watch"] * N_RARE + ["background"] * (N_PROBES - N_RARE)
    _, events, _, _ = _run(tmp_path, probe_labels=slices, mode_top=10)
    excess = events[0].mode.over_represented[0]
    assert (excess.label, excess.in_top, excess.top) == ("slice 'watch'", 5, 10)
    assert [p.probe for p in events[0].mode.probes][:1] == ["0"]  # no ids given: positions


def test_without_descriptions_the_records_and_events_are_as_before(tmp_path):
    import json

    mon, events, path, writer = _run(tmp_path)
    assert events and all(e.mode is None for e in events)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert all("mode" not in line for line in lines)  # the lines a monitor always wrote
    assert all("probes moving together" not in t for t in writer.texts)


def test_descriptions_are_checked_at_construction():
    model, probes = torch.nn.Linear(1, 1), torch.arange(6)
    with pytest.raises(ProbekitUsageError, match=r"Monitor: probe_texts must hold one text per probe \(6\)"):
        Monitor(model, probes, ScriptedLosses(), probe_texts=["a"])
    with pytest.raises(ProbekitUsageError, match=r"Monitor: probe_labels 'probe_set' must hold one label per probe"):
        Monitor(model, probes, ScriptedLosses(), probe_labels=["a", "b"])
    with pytest.raises(ProbekitUsageError, match=r"needs top_k >= 1\. Got top_k=0"):
        Monitor(model, probes, ScriptedLosses(), probe_labels=["a"] * 6, top_k=0)
    with pytest.raises(ProbekitUsageError, match=r"'mode_top' parameter of Monitor must be an int in the range"):
        Monitor(model, probes, ScriptedLosses(), mode_top=0)
