"""Regressions for defects found in review of the selection code (one test each)."""
from __future__ import annotations

import json
from pathlib import Path


from probekit.cli import main
from probekit.pool import Pool
from probekit.selectors.base import describe_param
from probekit.testing import make_test_pool


def test_response_accepts_seeds_beyond_32_bits():
    from probekit.selectors.response import ResponseSelector

    pool = make_test_pool(60)
    big = ResponseSelector(n_clusters=4).select(pool, 5, seed=2**32 + 5)
    assert len(big) == 5
    assert big.provenance.seed == 2**32 + 5


def test_jsonl_export_writes_nan_in_the_payload_as_null(tmp_path):
    from probekit.export import to_jsonl
    from probekit.probeset import ProbeSet

    pool = Pool.from_dict({"id": ["a", "b"], "emb": [[1.0, float("nan")], [0.5, float("inf")]]}, id_field="id")
    ps = ProbeSet.from_indices(pool, [1, 0], strategy="manual")
    to_jsonl(ps, tmp_path / "p.jsonl", pool=pool)
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert rows[0]["example"]["emb"] == [0.5, None] and rows[1]["example"]["emb"] == [1.0, None]


def test_boolean_predicate_matches_a_column_with_a_missing_value():
    from probekit.selectors.concern import ConcernSelector

    pool = Pool.from_dict({"id": list("abcd"), "flag": [True, False, None, False]}, id_field="id")
    assert list(ConcernSelector(slices=["flag=true"]).select(pool, 1).ids) == ["a"]
    assert sorted(ConcernSelector(slices=["flag=false"]).select(pool, 2).ids) == ["b", "d"]


def test_paths_are_recorded_as_paths_in_the_provenance(tmp_path):
    assert describe_param(Path("/x/pilot.npz")) == "/x/pilot.npz"
    assert describe_param({"file": tmp_path}) == {"file": str(tmp_path)}


def test_gradient_default_model_renumbers_id_like_labels():
    from probekit.selectors.gradient import GradientSelector

    pool = Pool.from_dict({"id": ["a", "b", "c", "d"], "x": [[0.1], [0.5], [-0.3], [0.9]],
                           "label": [0, 1, 100000, 1]}, id_field="id")
    ps = GradientSelector(input_field="x").select(pool, 4)
    assert ps.provenance.info["checkpoint"].startswith("default-init MLP(1-64-3)")


def test_inspect_measures_coverage_in_the_selectors_embedding_from_anywhere(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    topics = ["cats", "dogs", "tax", "rain", "jazz", "golf"]
    (work / "prompts.jsonl").write_text("".join(
        json.dumps({"uid": f"u{i}", "prompt": f"a question about {topics[i % 6]} number {i % 13}",
                    "score": float(i % 3)}) + "\n" for i in range(240)))
    monkeypatch.chdir(work)
    assert main(["select", "--strategy", "cluster", "--n", "12", "--data", "prompts.jsonl",
                 "--text-field", "prompt", "--id-field", "uid", "--out", "p.parquet"]) == 0
    monkeypatch.chdir(tmp_path)  # another directory: the recorded pool path is absolute
    capsys.readouterr()
    assert main(["inspect", "work/p.parquet"]) == 0
    out = capsys.readouterr().out
    assert "coverage (TfidfSvdEmbedder(text_field='prompt'" in out
    (work / "prompts.jsonl").rename(work / "moved.jsonl")
    assert main(["inspect", "work/p.parquet"]) == 0
    assert "coverage: skipped (the pool this probe set came from" in capsys.readouterr().out
    assert main(["inspect", "work/p.parquet", "--data", str(work / "gone.jsonl")]) == 2
