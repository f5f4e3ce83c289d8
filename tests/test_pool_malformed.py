"""Malformed pool files: ``probekit select --data FILE`` says what is wrong in one line.

Each case goes through the CLI in process: exit 2 (a usage error), exactly one
line on stderr (no ``datasets`` ERROR log before it), naming the file and the
line at fault (jsonl/csv) or what is wrong (parquet, directories).
"""
from __future__ import annotations

import json
import logging
import re

import pytest

from probekit.cli import EXIT_USAGE, main
from probekit.errors import ProbekitError, ProbekitUsageError
from probekit.pool import Pool

ROWS = [{"text": f"sentence {i}", "label": i} for i in range(6)]
LINES = [json.dumps(r) for r in ROWS]


def jsonl(*lines: str, end: str = "\n") -> str:
    return "\n".join(lines) + end


def write_parquet_half(path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS * 50), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# name, content (str, bytes or a callable that writes the file), what the one line must say
CASES = {
    "non-JSON middle line": (
        "pool.jsonl", jsonl(*LINES[:3], '{"text": "oops", label: 3}', *LINES[3:]),
        r"line 4 is not valid JSON \(Expecting property name enclosed in double quotes at column 18\)",
    ),
    "JSON but not an object": (
        "pool.jsonl", jsonl(*LINES[:3], "[1, 2]", *LINES[3:]),
        r"line 4 is an array, not an object: a JSON-lines pool has one JSON object per line",
    ),
    "truncated last line": (
        "pool.jsonl", jsonl(*LINES, '{"text": "sentence 6", "lab', end=""),
        r"line 7 ends in the middle of a JSON value: the file looks truncated",
    ),
    "another type in a column": (
        "pool.jsonl", jsonl(*LINES[:4], '{"text": "sentence x", "label": "four"}', *LINES[4:]),
        r"line 5: column 'label' is a number on line 1 but a string here; a column holds one type",
    ),
    "ragged csv row": (
        "pool.csv", "text,label\na,1\nb,2\nc,3,4\nd,5\n",
        r"could not be read as csv: line 4 has 3 fields, but the header \(line 1\) has 2",
    ),
    "truncated parquet": (
        "pool.parquet", write_parquet_half,
        r"could not be read as parquet: it is truncated or not a Parquet file",
    ),
    "empty file": ("pool.jsonl", "", r"is empty: a pool needs at least one row"),
    "not a save_to_disk directory": (
        "pool_dir", lambda path: (path.mkdir(), (path / "notes.txt").write_text("hi")),
        r"is not a datasets save_to_disk directory",
    ),
}


def make(tmp_path, name, content):
    path = tmp_path / name
    if callable(content):
        content(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_cli_prints_one_line_naming_file_and_fault(tmp_path, capfd, case):
    name, content, expected = CASES[case]
    path = make(tmp_path, name, content)
    out = tmp_path / "probes.parquet"
    code = main(["select", "--strategy", "random", "--n", "2", "--data", str(path), "--out", str(out)])
    captured = capfd.readouterr()
    lines = captured.err.splitlines()
    assert code == EXIT_USAGE
    assert len(lines) == 1, captured.err  # no datasets ERROR log, no traceback, no progress bar
    assert lines[0].startswith("probekit select: error: ")
    assert str(path) in lines[0]
    assert re.search(expected, lines[0]), lines[0]
    assert not out.exists()


@pytest.mark.parametrize("case", [c for c in CASES if c != "empty file"])
def test_from_file_raises_a_usage_error(tmp_path, case):
    name, content, expected = CASES[case]
    path = make(tmp_path, name, content)
    with pytest.raises(ProbekitUsageError, match=expected) as info:
        Pool.from_file(path)
    assert isinstance(info.value, ProbekitError)
    assert "\n" not in str(info.value)


def test_nested_type_conflict_names_the_path(tmp_path):
    path = tmp_path / "nested.jsonl"
    path.write_text(jsonl('{"meta": {"a": 1, "tags": ["x"]}}', '{"meta": {"a": 2, "tags": []}}',
                          '{"meta": {"a": "two", "tags": ["y"]}}'))
    with pytest.raises(ProbekitUsageError, match=r"line 3: column 'meta\.a' is a number on line 1 but a string here"):
        Pool.from_file(path)


def test_ints_floats_and_nulls_share_a_column(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(jsonl('{"x": 1, "y": null}', '{"x": 2.5, "y": "b"}', '{"x": null, "y": "c"}'))
    pool = Pool.from_file(path)
    expected = [1.0, 2.5]
    assert pool.column("x")[:2].tolist() == expected and pool.column("y").tolist() == [None, "b", "c"]


def test_json_array_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "pool.json"
    path.write_text('[\n  {"a": 1},\n  {"a": 2\n  {"a": 3}\n]\n')
    with pytest.raises(ProbekitUsageError, match=r"pool\.json' could not be read as json: line 4 is not valid JSON"):
        Pool.from_file(path)


def test_parquet_without_magic_bytes(tmp_path):
    path = tmp_path / "pool.parquet"
    path.write_text("text,label\na,1\n")
    with pytest.raises(ProbekitUsageError, match=r"it is not a Parquet file \(it does not start with"):
        Pool.from_file(path)


def test_datasets_logger_and_progress_bars_are_restored(tmp_path):
    from datasets.utils import logging as ds_logging

    logger = logging.getLogger("datasets")
    before = logger.level
    bars = ds_logging.is_progress_bar_enabled()
    path = make(tmp_path, "pool.jsonl", CASES["non-JSON middle line"][1])
    with pytest.raises(ProbekitUsageError):
        Pool.from_file(path)
    assert logger.level == before
    assert ds_logging.is_progress_bar_enabled() == bars
    good = make(tmp_path, "good.jsonl", jsonl(*LINES))
    assert len(Pool.from_file(good)) == len(ROWS)
    assert logger.level == before
