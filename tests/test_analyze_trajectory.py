"""``probekit analyze DIR [--probes probes.parquet]`` on a stored trajectory (deep-linear, small)."""
from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest

from probekit.cli import main
from probekit.rdm import rdm_series


@pytest.fixture(scope="module")
def traj(trajectory_cache):
    from probekit.eval.store.runner import load_or_record

    return load_or_record("deep-linear", "small", 0, cache_dir=trajectory_cache, progress=False)


@pytest.fixture(scope="module")
def probes_file(traj, tmp_path_factory):
    """A probe set of 20 pool examples in a scrambled order, with its own slice labels."""
    from probekit.probeset import ProbeSet, Provenance

    rng = np.random.default_rng(3)
    idx = rng.permutation(len(traj.pool))[:20]
    ids = tuple(traj.pool.ids[idx].tolist())
    slices = tuple("watch" if i < 4 else "background" for i in range(20))
    path = tmp_path_factory.mktemp("probes") / "probes.parquet"
    ProbeSet(ids, idx, slices, provenance=Provenance("manual")).save(path)
    return path


def _analyze(argv, capsys):
    got = main(["analyze", *map(str, argv)])
    out, err = capsys.readouterr()
    return got, out, err


def _series(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _check_series_is_of(rows, losses):
    """series.csv's mean loss and SHC are those of this [records, probes] matrix (computed here, independently)."""
    expected = rdm_series(np.asarray(losses, dtype=np.float64), 32)
    assert len(rows) == losses.shape[0]
    np.testing.assert_allclose([float(r["mean_loss"]) for r in rows], losses.mean(axis=1), rtol=1e-6)
    i = int(np.flatnonzero(expected.ready)[20])
    assert float(rows[i]["shc"]) == pytest.approx(expected.shc[i], rel=1e-9)


def test_analyze_a_trajectory_directory_reads_every_pool_column_and_its_ground_truth(traj, tmp_path, capsys):
    out = tmp_path / "out"
    got, printed, _ = _analyze([traj.path, "--out-dir", out], capsys)
    assert got == 0
    summary = json.loads((out / "summary.json").read_text())
    expected_onsets = [t.onset_step for t in traj.transitions if t.onset_step is not None]
    assert summary["probes"] == len(traj.pool) and summary["records"] == len(traj.steps)
    assert summary["ground_truth_onset_steps"] == expected_onsets
    assert [t["midpoint_step"] for t in summary["transitions"]] == [t.midpoint_step for t in traj.transitions]
    rows = _series(out / "series.csv")
    assert [int(r["step"]) for r in rows] == traj.steps.tolist()
    _check_series_is_of(rows, np.asarray(traj.losses))
    # the co-moving probes, described from the pool: its 'slice' column labels them
    slice_of = dict(zip(traj.pool.ids.tolist(), traj.pool.column("slice").tolist()))
    top = summary["focus"]["top_probes"]
    assert [p["slices"] for p in top] == [{"slice": slice_of[p["probe"]]} for p in top]
    assert all(p["text"].startswith("slow_overlap=") for p in top)  # no text column: the fields that vary
    for e in summary["focus"]["over_represented"]:
        assert e["in_top"] > e["expected"] == pytest.approx(e["top"] * e["in_set"] / e["probes"])
        assert e["in_top"] == sum(p["slices"]["slice"] == e["value"] for p in top)
    assert f"ground-truth transition mode_1 (trajectory manifest): onset step {expected_onsets[0]}" in printed
    assert "of the top 10 probes are slice=" in printed
    assert (out / "analyze.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probes_analyzes_exactly_that_probe_sets_columns_in_its_order(traj, probes_file, tmp_path, capsys):
    from probekit.cli.analyze_cmd import _read_trajectory
    from probekit.probeset import ProbeSet

    ps = ProbeSet.load(probes_file)
    args = argparse.Namespace(losses=str(traj.path), probes=str(probes_file), describe_field=["slow_overlap"],
                              slice_field=[])
    losses, steps, descriptions, _, _ = _read_trajectory(args)
    # the probe set's columns, in its order, read straight off the stored files (not through probe_losses)
    import datasets

    stored_ids = datasets.load_from_disk(str(traj.path / "pool"))["probe_id"]
    column = {pid: i for i, pid in enumerate(stored_ids)}
    expected = np.load(traj.path / "losses.npy")[:, [column[pid] for pid in ps.ids]]
    np.testing.assert_array_equal(losses, expected)
    assert descriptions.ids == ps.ids and descriptions.labels == {"probe_set": ps.slices}
    assert steps.tolist() == traj.steps.tolist()

    out = tmp_path / "out"
    got, printed, _ = _analyze([traj.path, "--probes", probes_file, "--out-dir", out, "--no-plot",
                                "--slice-field", "slice"], capsys)
    assert got == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["probes"] == 20
    _check_series_is_of(_series(out / "series.csv"), expected)
    top = summary["focus"]["top_probes"]
    rank = {p: i for i, p in enumerate(ps.ids)}
    slice_of = dict(zip(traj.pool.ids.tolist(), traj.pool.column("slice").tolist()))
    assert all(p["probe"] in rank for p in top)
    assert [p["slices"] for p in top] == [{"probe_set": ps.slices[rank[p["probe"]]], "slice": slice_of[p["probe"]]}
                                          for p in top]
    assert "probe set" in summary["source"] and "20 probes" in printed


def test_a_probe_id_missing_from_the_pool_is_one_line_naming_how_many(traj, tmp_path, capsys):
    from probekit.probeset import ProbeSet, Provenance

    path = tmp_path / "foreign.parquet"
    ids = ("x0001", "nope-1", "x0002", "nope-2", "nope-3")
    ProbeSet(ids, np.arange(5), None, provenance=Provenance("manual")).save(path)
    got, out, err = _analyze([traj.path, "--probes", path, "--out-dir", tmp_path / "out"], capsys)
    assert got == 1 and out == ""
    (line,) = err.strip().splitlines()
    assert "3 of 5 probe ids are not in the pool of trajectory" in line
    assert "'nope-1', 'nope-2', 'nope-3'" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra,code,pattern", [
    (["--slice-field", "nope"], 2, r"--slice-field 'nope' is not a column of the pool; columns: probe_id"),
    (["--describe-field", "nope"], 2, r"--describe-field 'nope' is not a column of the pool"),
    (["--steps-column", "step"], 2, r"--steps-column applies to parquet and csv files; .* is a trajectory directory"),
])
def test_trajectory_flags_are_checked(traj, tmp_path, capsys, extra, code, pattern):
    import re

    got, out, err = _analyze([traj.path, "--out-dir", tmp_path / "out", *extra], capsys)
    assert got == code and out == ""
    assert re.search(pattern, err.strip()), err
    assert not (tmp_path / "out").exists()


def test_out_dir_inside_the_trajectory_is_refused_and_the_store_stays_valid(traj, capsys):
    from probekit.eval.store.trajectory import Trajectory

    got, _, err = _analyze([traj.path, "--out-dir", traj.path / "analysis"], capsys)
    assert got == 2 and "would write over this command's input (LOSSES" in err
    Trajectory(traj.path)  # verifies every checksum: nothing was added


def test_trajectory_flags_need_a_trajectory(tmp_path, capsys):
    np.save(tmp_path / "losses.npy", np.random.default_rng(0).normal(size=(40, 6)))
    got, _, err = _analyze([tmp_path / "losses.npy", "--slice-field", "topic", "--out-dir", tmp_path / "o"], capsys)
    assert got == 2 and "--slice-field needs a trajectory directory as LOSSES" in err
