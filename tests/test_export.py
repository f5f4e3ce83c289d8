"""Exporters and importers: formats, lossless round trips, atomic failures."""
from __future__ import annotations

import os

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # never download anything

import json
import math

import numpy as np
import pytest

from probekit import export as ex
from probekit.errors import PoolMismatchError, ProbekitUsageError
from probekit.export import writers
from probekit.pool import Pool
from probekit.probeset import ProbeSet, Provenance

N = 12
TEXTS = [f"sentence number {i}" for i in range(N)]
LABELS = [i % 3 for i in range(N)]
ORDER = [9, 2, 11, 0, 5]


@pytest.fixture(scope="module")
def pool() -> Pool:
    return Pool.from_dict({"uid": [f"u{i}" for i in range(N)], "text": TEXTS, "label": LABELS}, id_field="uid")


@pytest.fixture()
def ps(pool) -> ProbeSet:
    return ProbeSet.from_indices(pool, ORDER, strategy="cluster", params={"k": 2}, seed=1,
                                 slices=["a", None, "b", "a", "c"], scores=[0.9, 1 / 3, 0.1, -2.5e-7, 0.0])


def plain(pool, **kw) -> ProbeSet:
    return ProbeSet.from_indices(pool, ORDER, strategy="random", seed=0, **kw)


def same_selection(a: ProbeSet, b: ProbeSet) -> None:
    assert a.ids == b.ids
    assert a.indices.tolist() == b.indices.tolist()
    assert a.slices == b.slices
    if a.scores is None:
        assert b.scores is None
    else:
        assert [float.hex(float(x)) for x in a.scores] == [float.hex(float(x)) for x in b.scores]


# -- exporters --------------------------------------------------------------------------
def test_jsonl_lines(tmp_path, ps, pool):
    ex.to_jsonl(ps, tmp_path / "p.jsonl", pool=pool)
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    expected_first = {"rank": 0, "id": "u9", "index": 9, "slice": "a", "score": 0.9,
                      "example": {"uid": "u9", "text": "sentence number 9", "label": 0}}
    assert lines[0] == expected_first
    assert [line["id"] for line in lines] == [f"u{i}" for i in ORDER]
    assert [line["example"]["text"] for line in lines] == [TEXTS[i] for i in ORDER]


def test_jsonl_without_pool_or_optional_parts(tmp_path, pool):
    ex.to_jsonl(plain(pool), tmp_path / "p.jsonl")
    first = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert first == {"rank": 0, "id": "u9", "index": 9}


def test_csv_text(tmp_path, ps, pool):
    ex.to_csv(ps, tmp_path / "p.csv")
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "rank,id,index,slice,score"
    assert lines[1] == "0,u9,9,a,0.9"
    assert lines[2] == "1,u2,2,,0.3333333333333333"
    ex.to_csv(plain(pool), tmp_path / "q.csv")
    assert (tmp_path / "q.csv").read_text().splitlines()[:2] == ["rank,id,index", "0,u9,9"]


def test_npy(tmp_path, ps):
    ex.to_npy(ps, tmp_path / "idx")  # no suffix added behind our back
    values = np.load(tmp_path / "idx")
    assert values.dtype == np.int64 and values.tolist() == ORDER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_lm_eval(tmp_path, ps):
    ex.to_lm_eval(ps, tmp_path / "samples.json", task="hellaswag")
    # sorted, not rank order: lm_eval logs the k-th evaluated document with doc_id = list[k]
    assert json.loads((tmp_path / "samples.json").read_text()) == {"hellaswag": sorted(ORDER)}


def test_datasets_directory(tmp_path, ps, pool):
    import datasets

    ex.to_datasets(ps, pool, tmp_path / "probes_ds")
    ds = datasets.load_from_disk(str(tmp_path / "probes_ds"))
    assert ds.column_names == ["uid", "text", "label", "probe_rank", "probe_id"]
    assert ds["text"][:] == [TEXTS[i] for i in ORDER]
    assert ds["probe_rank"][:] == list(range(len(ORDER)))
    assert ds["probe_id"][:] == [f"u{i}" for i in ORDER]


def test_datasets_directory_of_derived_id_pool_reloads_as_pool(tmp_path):
    derived = Pool.from_dict({"text": TEXTS})
    sel = ProbeSet.from_indices(derived, [3, 1], strategy="random")
    ex.to_datasets(sel, derived, tmp_path / "d")
    again = Pool.from_file(tmp_path / "d")
    assert again.id_field == "probe_id"
    assert again.ids.tolist() == [derived.ids[3], derived.ids[1]]


def test_export_dispatches_to_the_same_writers(tmp_path, ps, pool):
    for fmt, direct in [("jsonl", lambda p: ex.to_jsonl(ps, p, pool=pool)), ("csv", lambda p: ex.to_csv(ps, p)),
                        ("npy", lambda p: ex.to_npy(ps, p)), ("lm-eval", lambda p: ex.to_lm_eval(ps, p, "t"))]:
        direct(tmp_path / f"direct.{fmt}")
        ex.export(ps, tmp_path / f"via.{fmt}", fmt, pool=pool, task="t")
        assert (tmp_path / f"via.{fmt}").read_bytes() == (tmp_path / f"direct.{fmt}").read_bytes()
    ex.export(ps, tmp_path / "via_ds", "datasets", pool=pool)
    assert (tmp_path / "via_ds" / "dataset_info.json").exists()


# -- importers and round trips -------------------------------------------------------------
@pytest.mark.parametrize("with_pool", [False, True])
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_jsonl_and_csv_round_trip(tmp_path, ps, pool, fmt, with_pool):
    path = tmp_path / f"probes.{fmt}"
    ex.export(ps, path, fmt)
    back = getattr(ex, f"read_{fmt}")(path, pool=pool if with_pool else None)
    same_selection(back, ps)
    expected = Provenance(strategy="imported", params={"format": fmt, "source": f"probes.{fmt}"},
                          pool_fingerprint=pool.fingerprint if with_pool else None)
    assert back.provenance == expected


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_round_trip_without_slices_and_scores(tmp_path, pool, fmt):
    path = tmp_path / f"probes.{fmt}"
    ex.export(plain(pool), path, fmt)
    back = getattr(ex, f"read_{fmt}")(path)
    same_selection(back, plain(pool))
    assert back.slices is None and back.scores is None


def test_jsonl_rows_in_any_order_are_ranked(tmp_path, ps):
    ex.to_jsonl(ps, tmp_path / "p.jsonl")
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    (tmp_path / "shuffled.jsonl").write_text("\n".join(lines[::-1]) + "\n\n")
    same_selection(ex.read_jsonl(tmp_path / "shuffled.jsonl"), ps)


def test_non_finite_scores(tmp_path, pool):
    sel = plain(pool, scores=[1.0, math.nan, math.inf, -math.inf, 2.0])
    ex.to_jsonl(sel, tmp_path / "p.jsonl")
    text = (tmp_path / "p.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    assert [json.loads(x)["score"] for x in text.splitlines()] == [1.0, None, None, None, 2.0]
    assert np.isnan(ex.read_jsonl(tmp_path / "p.jsonl").scores[1:4]).all()
    ex.to_csv(sel, tmp_path / "p.csv")  # csv keeps them exactly
    same_selection(ex.read_csv(tmp_path / "p.csv"), sel)


@pytest.mark.parametrize("fmt, reader", [("npy", ex.read_npy), ("lm-eval", ex.read_lm_eval)])
def test_index_formats_round_trip(tmp_path, ps, pool, fmt, reader):
    path = tmp_path / f"probes.{fmt}"
    ex.export(ps, path, fmt, task="arc_easy")
    back = reader(path, pool)
    expected = ORDER if fmt == "npy" else sorted(ORDER)  # lm-eval files hold the set, in pool order
    assert back.indices.tolist() == expected and list(back.ids) == [f"u{i}" for i in expected]
    assert back.slices is None and back.scores is None
    assert back.provenance.strategy == "imported"
    assert back.provenance.pool_fingerprint == pool.fingerprint
    assert back.provenance.params["format"] == fmt and back.provenance.params["source"] == f"probes.{fmt}"


def test_lm_eval_task_selection(tmp_path, pool):
    path = tmp_path / "samples.json"
    path.write_text(json.dumps({"arc": [1, 2], "piqa": [5, 0, 3]}))
    back = ex.read_lm_eval(path, pool, task="piqa")
    assert back.indices.tolist() == [0, 3, 5]  # pool order, whatever the file's order
    assert back.provenance.params == {"format": "lm-eval", "source": "samples.json", "task": "piqa"}


# -- errors ---------------------------------------------------------------------------------
def test_unknown_format(tmp_path, ps):
    with pytest.raises(ProbekitUsageError, match=r"The 'fmt' parameter of export must be one of 'jsonl', 'csv', 'datasets', 'npy', 'lm-eval'. Got 'xml' instead"):
        ex.export(ps, tmp_path / "p.xml", "xml")
    assert list(tmp_path.iterdir()) == []


def test_datasets_export_without_pool_leaves_nothing(tmp_path, ps):
    with pytest.raises(ProbekitUsageError, match=r"export to 'datasets' needs the pool"):
        ex.export(ps, tmp_path / "out", "datasets")
    with pytest.raises(ProbekitUsageError, match=r"to_datasets needs the pool"):
        ex.to_datasets(ps, None, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_lm_eval_needs_a_task(tmp_path, ps):
    with pytest.raises(ProbekitUsageError, match=r"export to 'lm-eval' needs task"):
        ex.export(ps, tmp_path / "s.json", "lm-eval")
    with pytest.raises(ProbekitUsageError, match=r"The 'task' parameter of to_lm_eval must be a non-empty str. Got ' ' instead"):
        ex.to_lm_eval(ps, tmp_path / "s.json", " ")
    assert list(tmp_path.iterdir()) == []


def test_exporters_need_a_probe_set(tmp_path):
    with pytest.raises(ProbekitUsageError, match="to_csv needs a ProbeSet. Got list instead"):
        ex.to_csv([1, 2], tmp_path / "p.csv")


def test_payload_from_another_pool_is_refused(tmp_path, ps):
    other = Pool.from_dict({"uid": [f"u{i}" for i in range(N)], "text": TEXTS[::-1], "label": LABELS}, id_field="uid")
    with pytest.raises(PoolMismatchError, match="but pool '<memory>' is"):
        ex.to_jsonl(ps, tmp_path / "p.jsonl", pool=other)
    with pytest.raises(PoolMismatchError, match="but pool '<memory>' is"):
        ex.to_datasets(ps, other, tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_leaves_no_directory(tmp_path, ps, pool, monkeypatch):
    import datasets

    def half_then_fail(self, path, *args, **kwargs):
        with open(os.path.join(path, "data-00000-of-00001.arrow"), "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        ex.to_datasets(ps, pool, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_keeps_previous_file(tmp_path, ps, pool, monkeypatch):
    path = tmp_path / "p.jsonl"
    ex.to_jsonl(ps, path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise RuntimeError("serialiser broke")

    monkeypatch.setattr(writers, "canonical_json", fail)
    with pytest.raises(RuntimeError, match="serialiser broke"):
        ex.to_jsonl(plain(pool), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.jsonl"]


@pytest.mark.parametrize("reader", [ex.read_jsonl, ex.read_csv])
def test_read_missing_file(tmp_path, reader):
    with pytest.raises(ProbekitUsageError, match=r"file '.*nope' does not exist"):
        reader(tmp_path / "nope")


@pytest.mark.parametrize("text, message", [
    ('{"rank": 0, "id": "a"}\n', r"line 1 is not a probe record with rank, id and index"),
    ('{"rank": 0, "id": "a", "index": 1}\n[1]\n', r"line 2 is not a probe record"),
    ("not json\n", r"line 1 is not a probe record"),
    ('{"rank": 0, "id": "a", "index": 1}\n{"rank": 2, "id": "b", "index": 2}\n',
     r"ranks must be 0, 1, \.\.\., n-1 \(each once\). Got \[0, 2\] instead"),
    ('{"rank": 0, "id": "a", "index": 1}\n{"rank": 1, "id": "a", "index": 2}\n',
     r"does not hold a valid probe set: ProbeSet ids must be unique"),
    ("\n", r"holds no probes"),
])
def test_bad_jsonl(tmp_path, text, message):
    (tmp_path / "p.jsonl").write_text(text)
    with pytest.raises(ProbekitUsageError, match=message):
        ex.read_jsonl(tmp_path / "p.jsonl")


@pytest.mark.parametrize("text, message", [
    ("rank,id\n0,a\n", r"must have the columns rank, id, index. Got \['rank', 'id'\] instead"),
    ("", r"must have the columns rank, id, index. Got \[\] instead"),
    ("rank,id,index\n0,a,x\n", r"line 2 has a bad rank, index or score"),
    ("rank,id,index,score\n0,a,1,\n", r"line 2 has a bad rank, index or score"),
    ("rank,id,index\n", r"holds no probes"),
    ("rank,id,index\n1,a,1\n", r"ranks must be 0, 1, \.\.\., n-1"),
])
def test_bad_csv(tmp_path, text, message):
    (tmp_path / "p.csv").write_text(text)
    with pytest.raises(ProbekitUsageError, match=message):
        ex.read_csv(tmp_path / "p.csv")


def test_read_csv_checks_against_pool(tmp_path, pool):
    (tmp_path / "p.csv").write_text("rank,id,index\n0,u1,2\n")
    with pytest.raises(PoolMismatchError, match="probe indices do not point at the probe ids"):
        ex.read_csv(tmp_path / "p.csv", pool=pool)


@pytest.mark.parametrize("values, message", [
    (np.array([[1, 2]]), r"must hold a non-empty 1-D list of integer indices"),
    (np.array([], dtype=np.int64), r"must hold a non-empty 1-D list of integer indices"),
    (np.array([0.5, 1.0]), r"must hold a non-empty 1-D list of integer indices"),
    (np.array([1, 12]), r"index 12 is outside pool '<memory>' \(size 12\)"),
    (np.array([1, 1]), r"does not hold a valid probe set: ProbeSet ids must be unique"),
])
def test_bad_npy(tmp_path, pool, values, message):
    np.save(tmp_path / "i.npy", values)
    with pytest.raises(ProbekitUsageError, match=message):
        ex.read_npy(tmp_path / "i.npy", pool)


def test_npy_errors(tmp_path, pool):
    with pytest.raises(ProbekitUsageError, match=r"npy file '.*nope\.npy' does not exist"):
        ex.read_npy(tmp_path / "nope.npy", pool)
    (tmp_path / "junk.npy").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ProbekitUsageError, match=r"junk\.npy is not a readable \.npy index array"):
        ex.read_npy(tmp_path / "junk.npy", pool)
    np.save(tmp_path / "i.npy", np.array([1, 2]))
    with pytest.raises(ProbekitUsageError, match="reading npy needs the Pool the indices refer to. Got NoneType"):
        ex.read_npy(tmp_path / "i.npy", None)


@pytest.mark.parametrize("text, task, message", [
    ("{not json", None, r"is not JSON"),
    ("[1, 2]", None, r"must be a JSON object mapping task names to index lists"),
    ('{"a": [1], "b": [2]}', None, r"holds several tasks \(a, b\); pass task=<one of them>"),
    ('{"a": [1]}', "b", r"task 'b' is not in .*; tasks: a"),
    ('{"a": [1]}', "", r"The 'task' parameter of read_lm_eval must be a non-empty str"),
    ('{"a": 3}', None, r"task 'a' must map to a list of indices"),
    ('{"a": [1, "2"]}', None, r"must hold integer indices only"),
    ('{"a": [1, true]}', None, r"must hold integer indices only"),
])
def test_bad_lm_eval(tmp_path, pool, text, task, message):
    (tmp_path / "s.json").write_text(text)
    with pytest.raises(ProbekitUsageError, match=message):
        ex.read_lm_eval(tmp_path / "s.json", pool, task=task)


def test_lm_eval_missing_file(tmp_path, pool):
    with pytest.raises(ProbekitUsageError, match=r"lm-eval file '.*s\.json' does not exist"):
        ex.read_lm_eval(tmp_path / "s.json", pool)
