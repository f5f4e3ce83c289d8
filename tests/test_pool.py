"""Pool: loading, stable ids, content fingerprint, lookups."""
from __future__ import annotations

import os

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # never download anything

import hashlib
import json
import pickle
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from probekit.errors import ProbekitUsageError
from probekit.pool import ID_COLUMN, Pool

ROWS = [
    {"text": "the cat sat", "label": 0, "score": 0.1},
    {"text": "a dog ran", "label": 1, "score": 1 / 7},
    {"text": "birds sing", "label": 2, "score": -3.5},
    {"text": "fish swim", "label": 1, "score": 2.0e-12},
]


def write(rows: list[dict], path, fmt: str | None = None) -> str:
    fmt = fmt or str(path).rsplit(".", 1)[-1]
    frame = pd.DataFrame(rows)
    if fmt == "jsonl":
        with open(path, "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    elif fmt == "json":
        with open(path, "w") as fh:
            json.dump(rows, fh)
    elif fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt == "disk":
        import datasets

        datasets.Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(path))
    return str(path)


def columns(rows: list[dict]) -> dict:
    return {k: [r[k] for r in rows] for k in rows[0]}


def expected_id(row: dict) -> str:
    text = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "pk-" + hashlib.sha256(text.encode()).hexdigest()[:16]


# -- loading and ids ------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet", "disk"])
def test_every_format_gives_the_same_ids_and_fingerprint(tmp_path, fmt):
    pool = Pool.from_file(write(ROWS, tmp_path / f"pool.{fmt}", fmt))
    reference = Pool.from_dict(columns(ROWS))
    assert len(pool) == len(ROWS)
    assert pool.ids.tolist() == [expected_id(r) for r in ROWS]
    assert pool.fingerprint == reference.fingerprint
    assert pool.id_field == ID_COLUMN == "probe_id"
    assert pool.columns == ["text", "label", "score", "probe_id"]
    assert pool.name == str(tmp_path / f"pool.{fmt}")


def test_arrow_file_loads(tmp_path):
    directory = write(ROWS, tmp_path / "saved", "disk")
    arrow_file = next(p for p in os.listdir(directory) if p.endswith(".arrow"))
    pool = Pool.from_file(os.path.join(directory, arrow_file))
    assert pool.fingerprint == Pool.from_dict(columns(ROWS)).fingerprint


def test_fingerprint_ignores_path_and_reload(tmp_path):
    a = Pool.from_file(write(ROWS, tmp_path / "a.jsonl"))
    b = Pool.from_file(write(ROWS, tmp_path / "elsewhere.jsonl"))
    again = Pool.from_file(tmp_path / "a.jsonl")
    assert a.fingerprint == b.fingerprint == again.fingerprint
    assert len(a.fingerprint) == 64 and int(a.fingerprint, 16) >= 0


def test_fingerprint_ignores_arrow_chunking():
    import datasets

    table = pa.Table.from_pylist(ROWS)
    rechunked = pa.concat_tables([table.slice(0, 1), table.slice(1, 2), table.slice(3)])
    assert rechunked.column("text").num_chunks == 3
    a = Pool.from_dataset(datasets.Dataset(table))
    b = Pool.from_dataset(datasets.Dataset(rechunked))
    assert a.fingerprint == b.fingerprint


@pytest.mark.parametrize(
    "change",
    [
        lambda rows: [{**rows[0], "label": 5}, *rows[1:]],                 # one int value
        lambda rows: [{**rows[0], "score": 0.1 + 1e-16}, *rows[1:]],       # one float by an ulp
        lambda rows: [{**rows[0], "text": "the cat sat!"}, *rows[1:]],     # one string
        lambda rows: [rows[1], rows[0], *rows[2:]],                        # row order
        lambda rows: [{"label": r["label"], "text": r["text"], "score": r["score"]} for r in rows],  # column order
        lambda rows: [{"txt": r["text"], "label": r["label"], "score": r["score"]} for r in rows],   # column name
        lambda rows: [{**r, "extra": 1} for r in rows],                    # extra column
        lambda rows: rows[:-1],                                            # one row fewer
    ],
)
def test_fingerprint_changes_with_content(change):
    assert Pool.from_dict(columns(change(ROWS))).fingerprint != Pool.from_dict(columns(ROWS)).fingerprint


def test_fingerprint_tells_null_from_zero():
    with_null = Pool.from_dict({"x": [1.0, None, 3.0]}, id_field=None)
    with_zero = Pool.from_dict({"x": [1.0, 0.0, 3.0]})
    assert with_null.fingerprint != with_zero.fingerprint


def test_fingerprint_of_100k_rows_is_fast():
    n = 100_000
    rng = np.random.default_rng(0)
    pool = Pool.from_dict(
        {"id": np.arange(n).tolist(), "text": [f"example {i}" for i in range(n)],
         "x": rng.normal(size=n).tolist()},
        id_field="id",
    )
    start = time.perf_counter()
    fingerprint = pool.fingerprint
    assert time.perf_counter() - start < 5.0
    assert len(fingerprint) == 64


def test_identical_rows_get_occurrence_suffixes():
    rows = [ROWS[0], ROWS[1], ROWS[0], ROWS[0]]
    pool = Pool.from_dict(columns(rows))
    base = expected_id(ROWS[0])
    assert pool.ids.tolist() == [base, expected_id(ROWS[1]), base + "-1", base + "-2"]


def test_id_field_values_become_strings():
    pool = Pool.from_dict({"key": [10, 20, 30], "text": ["a", "b", "c"]}, id_field="key")
    assert pool.id_field == "key"
    assert pool.ids.tolist() == ["10", "20", "30"]
    assert pool.columns == ["key", "text"]  # no derived column added
    assert pool.index_of(["30", "10"]).tolist() == [2, 0]
    assert pool.index_of("20").dtype == np.int64


def test_existing_probe_id_column_is_used_as_ids():
    pool = Pool.from_dict({"probe_id": ["x", "y"], "text": ["a", "b"]})
    assert pool.id_field == "probe_id"
    assert pool.ids.tolist() == ["x", "y"]


def test_select_view_is_materialised():
    import datasets

    ds = datasets.Dataset.from_dict(columns(ROWS)).select([3, 2, 1, 0])
    pool = Pool.from_dataset(ds)
    assert pool.fingerprint == Pool.from_dict(columns(ROWS[::-1])).fingerprint


# -- lookups ----------------------------------------------------------------------
def test_column_rows_and_index_of():
    pool = Pool.from_dict(columns(ROWS))
    assert pool.column("label").tolist() == [0, 1, 2, 1]
    assert pool.column("text").tolist() == [r["text"] for r in ROWS]
    assert pool.rows([2, 0]) == [
        {**ROWS[2], "probe_id": expected_id(ROWS[2])},
        {**ROWS[0], "probe_id": expected_id(ROWS[0])},
    ]
    assert pool.rows([]) == []
    ids = pool.ids.tolist()
    assert pool.index_of([ids[3], ids[1]]).tolist() == [3, 1]


def test_ids_are_read_only():
    pool = Pool.from_dict(columns(ROWS))
    with pytest.raises(ValueError, match="read-only"):
        pool.ids[0] = "other"


def test_pickle_round_trip():
    pool = Pool.from_dict(columns(ROWS))
    pool.index_of(pool.ids[:1])  # builds the lookup cache
    clone = pickle.loads(pickle.dumps(pool))
    assert clone.ids.tolist() == pool.ids.tolist()
    assert clone.fingerprint == Pool.from_dict(columns(ROWS)).fingerprint
    assert clone.rows([1]) == pool.rows([1])
    assert clone.index_of(pool.ids[2]).tolist() == [2]


def test_pickle_round_trip_of_file_pool(tmp_path):
    pool = Pool.from_file(write(ROWS, tmp_path / "p.parquet"))
    clone = pickle.loads(pickle.dumps(pool))
    assert clone.name == pool.name and clone.rows([0]) == pool.rows([0])


# -- errors -------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(ProbekitUsageError, match=r"pool file '.*nope\.jsonl' does not exist; expected \.jsonl"):
        Pool.from_file(tmp_path / "nope.jsonl")


def test_unknown_extension(tmp_path):
    path = tmp_path / "pool.txt"
    path.write_text("hello\n")
    with pytest.raises(ProbekitUsageError, match=r"pool\.txt' has unknown extension '\.txt'; allowed: \.jsonl"):
        Pool.from_file(path)


@pytest.mark.parametrize("name, text", [("e.jsonl", ""), ("e.csv", "a,b\n"), ("e.json", "[]"), ("w.jsonl", "\n\n")])
def test_empty_files(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(ProbekitUsageError, match=rf"pool file '.*{name}' is empty"):
        Pool.from_file(tmp_path / name)


def test_corrupt_jsonl(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"a":\n')
    with pytest.raises(ProbekitUsageError, match=r"bad\.jsonl' could not be read as json: "):
        Pool.from_file(tmp_path / "bad.jsonl")


def test_json_array_of_non_objects(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    with pytest.raises(ProbekitUsageError, match="must be a JSON array of objects or JSON lines"):
        Pool.from_file(tmp_path / "list.json")


def test_corrupt_parquet(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ProbekitUsageError, match=r"bad\.parquet' could not be read as parquet"):
        Pool.from_file(tmp_path / "bad.parquet")


def test_directory_that_is_not_a_saved_dataset(tmp_path):
    (tmp_path / "junk").mkdir()
    with pytest.raises(ProbekitUsageError, match="is not a datasets save_to_disk directory"):
        Pool.from_file(tmp_path / "junk")


def test_dataset_dict_is_refused():
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(columns(ROWS))})
    with pytest.raises(ProbekitUsageError, match=r"is a DatasetDict with splits \['train'\]"):
        Pool.from_dataset(dd)


def test_not_a_dataset():
    with pytest.raises(ProbekitUsageError, match="must be a datasets.Dataset. Got list instead"):
        Pool.from_dataset([1, 2])


def test_empty_dict():
    with pytest.raises(ProbekitUsageError, match="is empty: a pool needs at least one row"):
        Pool.from_dict({"a": []})


def test_from_dict_bad_input():
    with pytest.raises(ProbekitUsageError, match="needs a dict of columns. Got list instead"):
        Pool.from_dict([1, 2])
    with pytest.raises(ProbekitUsageError, match="columns must have equal lengths"):
        Pool.from_dict({"a": [1, 2], "b": [1]})


def test_missing_id_column(tmp_path):
    path = write(ROWS, tmp_path / "p.csv")
    with pytest.raises(ProbekitUsageError, match=r"id_field 'uid' is not a column of pool '.*p\.csv'; columns: text, label, score"):
        Pool.from_file(path, id_field="uid")


def test_id_field_type():
    with pytest.raises(ProbekitUsageError, match="The 'id_field' parameter of Pool must be None or an instance of str"):
        Pool.from_dict(columns(ROWS), id_field=3)


def test_duplicate_ids(tmp_path):
    path = write(ROWS, tmp_path / "p.jsonl")
    with pytest.raises(ProbekitUsageError, match=r"id column 'label' of pool '.*p\.jsonl' has duplicate values: '1' \(2x\)"):
        Pool.from_file(path, id_field="label")


def test_missing_ids():
    with pytest.raises(ProbekitUsageError, match="id column 'key' of pool '<memory>' has 1 missing values"):
        Pool.from_dict({"key": ["a", None], "x": [1, 2]}, id_field="key")


def test_unknown_column():
    pool = Pool.from_dict(columns(ROWS))
    with pytest.raises(ProbekitUsageError, match="column 'nope' is not in pool '<memory>'; columns: text, label"):
        pool.column("nope")


def test_unknown_ids():
    pool = Pool.from_dict(columns(ROWS))
    with pytest.raises(ProbekitUsageError, match=r"2 ids are not in pool '<memory>': 'x', 'y'"):
        pool.index_of([pool.ids[0], "x", "y"])


def test_rows_out_of_range():
    pool = Pool.from_dict(columns(ROWS))
    with pytest.raises(ProbekitUsageError, match=r"Pool.rows indices must be in the range \[0, 3\]. Got 4 instead"):
        pool.rows([0, 4])
    with pytest.raises(ProbekitUsageError, match="Pool.rows needs a 1-D sequence of ints"):
        pool.rows([0.5])


def test_fingerprint_of_number_lists_is_bytes_based_and_exact():
    import pyarrow as pa

    from probekit.pool import table_fingerprint

    x = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    fixed = pa.table({"e": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 8)})
    variable = pa.table({"e": pa.array(list(x))})
    assert table_fingerprint(fixed) == table_fingerprint(variable)  # one list type or another
    y = x.copy()
    y[7, 3] = np.nextafter(y[7, 3], np.float32(1))  # one ulp
    assert table_fingerprint(pa.table({"e": pa.array(list(y))})) != table_fingerprint(variable)
    # The same flat values split into rows differently, or a null where a 0 was, differ.
    assert table_fingerprint(pa.table({"e": pa.array([[1.0, 2.0], [3.0]])})) != \
        table_fingerprint(pa.table({"e": pa.array([[1.0], [2.0, 3.0]])}))
    assert table_fingerprint(pa.table({"e": pa.array([[1.0, None], None])})) != \
        table_fingerprint(pa.table({"e": pa.array([[1.0, 0.0], None])}))
    assert table_fingerprint(pa.table({"e": pa.array([[1.0], None])})) != \
        table_fingerprint(pa.table({"e": pa.array([[1.0], []])}))
