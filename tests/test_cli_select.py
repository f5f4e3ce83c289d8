"""probekit select / inspect / export / selectors, end to end through main()."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from probekit.cli import main
from probekit.cli.common import parse_value
from probekit.probeset import ProbeSet


@pytest.fixture()
def data_file(tmp_path):
    rows = [{"uid": f"u{i}", "prompt": f"question {i % 7} about topic {i % 3}", "grp": "ab"[i % 2],
             "x": float(i)} for i in range(60)]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_select_random_stratified_then_inspect_and_export(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["select", "--strategy", "random", "--n", "20", "--param", "stratify=label",
                 "--param", "mode=balanced"]) == 0
    out = capsys.readouterr().out
    assert "selected 20 of 1797 examples from builtin:digits" in out
    ps = ProbeSet.load(tmp_path / "probes-random-20.parquet")
    assert ps.provenance.params == {"stratify": "label", "mode": "balanced"}
    assert ps.provenance.info["pool"] == "builtin:digits"
    assert sorted(ps.slices) == sorted([str(d) for d in range(10)] * 2)

    assert main(["inspect", "probes-random-20.parquet"]) == 0
    text = capsys.readouterr().out
    assert "20 probes, strategy 'random', seed 0" in text
    ratio = float(re.search(r"ratio ([0-9.]+)\)", text).group(1))
    assert 0.5 < ratio < 1.5

    assert main(["export", "probes-random-20.parquet", "--format", "lm-eval", "--task", "digits"]) == 0
    indices = json.loads((tmp_path / "probes-random-20.json").read_text())["digits"]
    assert indices == sorted(ps.indices.tolist())  # lm-eval pairs doc_id with sorted positions
    assert main(["export", "probes-random-20.parquet", "--format", "datasets"]) == 0
    from datasets import load_from_disk

    ds = load_from_disk(str(tmp_path / "probes-random-20-datasets"))
    assert ds["id"] == list(ps.ids)


def test_select_from_a_jsonl_file_with_id_field(tmp_path, data_file, capsys):
    out = tmp_path / "p.parquet"
    assert main(["select", "--strategy", "random", "--n", "10", "--data", str(data_file),
                 "--id-field", "uid", "--seed", "3", "--out", str(out)]) == 0
    ps = ProbeSet.load(out)
    assert all(i.startswith("u") for i in ps.ids) and ps.provenance.seed == 3
    assert main(["export", str(out), "--format", "jsonl", "--out", str(tmp_path / "p.jsonl")]) == 0
    first = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert first["id"] == ps.ids[0] and first["example"]["uid"] == ps.ids[0]


def test_selectors_lists_every_strategy(capsys):
    assert main(["selectors"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^random +Uniform random probes", out, re.M)
    assert "parameters: stratify=None, mode='proportional'" in out


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("none") is None and parse_value("[1, 2]") == [1, 2] and parse_value("abc") == "abc"
    assert parse_value('{"a": 1}') == {"a": 1}
    assert parse_value('"2024"') == "2024" and parse_value("2024") == 2024


@pytest.mark.parametrize(
    "argv,match,code",
    [
        (["select", "--strategy", "randm"], r"Unknown selector 'randm'\. Did you mean: random\?", 2),
        (["select", "--strategy", "random", "--n", "0"],
         r"The 'n' parameter of RandomSelector\.select must be an int in the range \[1, 1797\]\. Got 0 instead\.", 2),
        (["select", "--strategy", "random", "--n", "5000"], r"\[1, 1797\]\. Got 5000 instead", 2),
        (["select", "--strategy", "random", "--param", "stratify=colour"], r"names column 'colour'", 2),
        (["select", "--strategy", "random", "--param", "bogus=1"], r"Invalid parameter 'bogus' for selector 'random'", 2),
        (["select", "--strategy", "random", "--slice", "rare:topic"], r"--slice does not apply to strategy 'random'", 2),
        (["select", "--strategy", "random", "--param", "mode=[1"], r"looks like JSON but does not parse", 2),
        (["select", "--strategy", "random", "--data", "{missing}"], r"does not exist|not found|No such", 2),
        (["select", "--strategy", "random", "--data", "{empty}"], r"empty|no rows|no data", 2),
        (["select", "--strategy", "random", "--data", "builtin:digitz"], r"Unknown built-in pool 'digitz'\. Did you mean: digits\?", 2),
        (["select", "--strategy", "random", "--out", "{out_txt}"], r"--out must name a \.parquet file", 2),
        (["select", "--strategy", "cluster", "--n", "5", "--data", "{ragged}", "--embedding-field", "emb"],
         r"embedding column 'emb' must have one length for every row; found lengths 2 to 3", 2),
        (["select", "--strategy", "cluster", "--n", "5", "--data", "{ragged}", "--embedding-field", "nope"],
         r"'embedding_field' parameter of ClusterSelector names column 'nope'", 2),
        (["select", "--strategy", "concern", "--data", "builtin:toy-text", "--slice", "topic=knitting"],
         r"slice 'topic=knitting' matches no example of the pool", 2),
        (["select", "--strategy", "concern", "--data", "builtin:toy-text", "--slice", "bias:"],
         r"slice spec 'bias:' is not understood", 2),
        (["export", "{probes}", "--format", "xml"], r"--format must be one of jsonl, csv, datasets, npy, lm-eval", 2),
        (["export", "{probes}", "--format", "lm-eval"], r"--format lm-eval needs --task", 2),
        (["inspect", "{bogus_parquet}"], r"is not a probe-set file", 1),
    ],
)
def test_errors_are_one_line_with_exit_codes_and_no_output(tmp_path, capsys, monkeypatch, argv, match, code):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "bogus.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "ragged.jsonl").write_text("".join(
        json.dumps({"id": f"r{i}", "emb": [0.5] * (2 + i % 2)}) + "\n" for i in range(12)))
    assert main(["select", "--strategy", "random", "--n", "5", "--out", str(tmp_path / "probes.parquet")]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.iterdir())
    fill = {"missing": str(tmp_path / "missing.jsonl"), "empty": str(tmp_path / "empty.jsonl"),
            "out_txt": str(tmp_path / "p.txt"), "probes": str(tmp_path / "probes.parquet"),
            "bogus_parquet": str(tmp_path / "bogus.parquet"), "ragged": str(tmp_path / "ragged.jsonl")}
    assert main([a.format(**fill) for a in argv]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(match, err[0]), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing new, nothing partial


def test_export_refuses_a_different_pool_unless_told(tmp_path, capsys, data_file):
    out = tmp_path / "p.parquet"
    assert main(["select", "--strategy", "random", "--n", "5", "--data", str(data_file), "--id-field", "uid",
                 "--out", str(out)]) == 0
    other = tmp_path / "other.jsonl"
    other.write_text(data_file.read_text().replace("question 1", "question one"))
    capsys.readouterr()
    assert main(["export", str(out), "--format", "npy", "--data", str(other), "--id-field", "uid"]) == 1
    assert "--ignore-fingerprint" in capsys.readouterr().err
    assert main(["export", str(out), "--format", "npy", "--data", str(other), "--id-field", "uid",
                 "--ignore-fingerprint", "--out", str(tmp_path / "i.npy")]) == 0
    assert np.load(tmp_path / "i.npy").tolist() == ProbeSet.load(out).indices.tolist()
