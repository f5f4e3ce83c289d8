"""Outputs belong to the user: no data loss, modes that follow the umask, explicit overwrites.

Regression tests for defects a new-user trial found: an export that replaced a directory
full of the user's files, commands that wrote over their own inputs, outputs created 0600
whatever the umask, a probe set refused against its own pool or a row-shuffled copy of it.
"""
from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from probekit.atomic import atomic_directory, atomic_file, staged_files
from probekit.cli import main
from workspace import one_error_line, snapshot
from probekit.errors import ProbekitUsageError
from probekit.probeset import ProbeSet


@contextlib.contextmanager
def umask(mask: int):
    before = os.umask(mask)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- 1. data loss --------------------------------------------------------------------------
def test_export_datasets_never_replaces_a_directory_of_the_users(selected, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    before = snapshot(tmp_path)
    for extra in ([], ["--overwrite"]):
        assert main(["export", str(selected), "--format", "datasets", "--out", str(mine)] + extra) == 2
        assert "is a directory with files in it that are not a probe-set datasets export" in one_error_line(capsys)
        assert snapshot(tmp_path) == before  # the user's file is there, nothing was added


def test_export_datasets_to_the_working_directory_is_refused_and_leaves_nothing(selected, tmp_path, capsys):
    before = snapshot(tmp_path)
    assert main(["export", str(selected), "--format", "datasets", "--out", "."]) == 2
    one_error_line(capsys)
    assert snapshot(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".old", ".tmp"))]


def test_export_datasets_replaces_its_own_kind_only_with_overwrite(selected, tmp_path, capsys):
    from datasets import load_from_disk

    out = tmp_path / "ds"
    assert main(["export", str(selected), "--format", "datasets", "--out", str(out)]) == 0
    first = snapshot(out)
    assert main(["export", str(selected), "--format", "datasets", "--out", str(out)]) == 2
    assert "already exists (a probe-set datasets export); pass --overwrite to replace it" in one_error_line(capsys)
    assert snapshot(out) == first
    assert main(["export", str(selected), "--format", "datasets", "--out", str(out), "--overwrite"]) == 0
    assert load_from_disk(str(out))["probe_id"] == list(ProbeSet.load(selected).ids)


def test_export_datasets_never_replaces_a_datasets_directory_it_did_not_write(selected, tmp_path, capsys):
    from datasets import Dataset

    Dataset.from_dict({"a": list(range(30))}).save_to_disk(str(tmp_path / "my_data"))
    capsys.readouterr()  # datasets' own bars
    before = snapshot(tmp_path)
    assert main(["export", str(selected), "--format", "datasets", "--out", "my_data", "--overwrite"]) == 2
    assert "not a probe-set datasets export" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


def test_nothing_is_written_inside_a_datasets_pool(tmp_path, text_pool, capsys, monkeypatch):
    from datasets import Dataset

    monkeypatch.chdir(tmp_path)
    Dataset.from_json(str(text_pool)).save_to_disk("pool_ds")
    assert main(["select", "--strategy", "random", "--n", "6", "--data", "pool_ds", "--id-field", "uid",
                 "--out", "p.parquet"]) == 0
    capsys.readouterr()
    before = snapshot(tmp_path)
    cases = [["select", "--strategy", "random", "--n", "6", "--data", "pool_ds", "--id-field", "uid",
              "--out", "pool_ds/p.parquet"],
             ["export", "p.parquet", "--format", "lm-eval", "--task", "t", "--out", "pool_ds/state.json",
              "--overwrite"]]
    for argv in cases:
        assert main(argv) == 2
        assert "would write over this command's input" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


def test_export_with_another_pool_still_protects_the_recorded_one(selected, text_pool, tmp_path, capsys):
    copy = tmp_path / "copy.jsonl"
    copy.write_text(text_pool.read_text())
    before = snapshot(tmp_path)
    assert main(["export", str(selected), "--format", "jsonl", "--data", str(copy), "--out", str(text_pool),
                 "--overwrite"]) == 2
    assert "would write over this command's input (the probe set's pool" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


def test_select_never_writes_over_its_pool(tmp_path, capsys, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.chdir(tmp_path)
    pq.write_table(pa.table({"x": np.arange(50.0), "y": np.arange(50.0) ** 2}), "pool.parquet")
    before = snapshot(tmp_path)
    for out in ("pool.parquet", str(tmp_path / "pool.parquet"), "./sub/../pool.parquet"):
        for extra in ([], ["--overwrite"]):
            argv = ["select", "--strategy", "random", "--n", "5", "--data", "pool.parquet", "--out", out] + extra
            assert main(argv) == 2
            assert "would write over this command's input (--data pool.parquet)" in one_error_line(capsys)
    os.link(tmp_path / "pool.parquet", tmp_path / "alias.parquet")  # the same file by another name
    assert main(["select", "--strategy", "random", "--n", "5", "--data", "pool.parquet",
                 "--out", "alias.parquet", "--overwrite"]) == 2
    one_error_line(capsys)
    (tmp_path / "alias.parquet").unlink()
    assert snapshot(tmp_path) == before


def test_export_never_writes_over_the_probe_sets_pool_or_itself(selected, tmp_path, text_pool, capsys):
    before = snapshot(tmp_path)
    cases = [
        (["--format", "jsonl", "--out", str(text_pool)], "the probe set's pool"),  # not even given: recorded
        (["--format", "csv", "--out", str(text_pool), "--overwrite"], "the probe set's pool"),
        (["--format", "jsonl", "--out", str(text_pool), "--data", str(text_pool)], "--data"),
        (["--format", "npy", "--out", str(selected), "--overwrite"], "PROBES"),
        (["--format", "datasets", "--out", str(tmp_path), "--overwrite"], "input"),
    ]
    for args, named in cases:
        assert main(["export", str(selected)] + args) == 2
        line = one_error_line(capsys)
        assert "write over this command's input" in line or "working directory" in line, line
        assert named in line or "working directory" in line
    assert snapshot(tmp_path) == before


def test_an_existing_output_file_is_replaced_only_with_overwrite(selected, tmp_path, text_pool, capsys):
    (tmp_path / "out.jsonl").write_text("my file\n")
    assert main(["export", str(selected), "--format", "jsonl", "--out", "out.jsonl"]) == 2
    assert one_error_line(capsys) == ("probekit export: error: --out out.jsonl already exists; pass --overwrite "
                                      "to replace it, or choose another --out.")
    assert (tmp_path / "out.jsonl").read_text() == "my file\n"
    assert main(["export", str(selected), "--format", "jsonl", "--out", "out.jsonl", "--overwrite"]) == 0
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 12
    assert main(["select", "--strategy", "random", "--n", "3", "--data", str(text_pool), "--id-field", "uid",
                 "--out", "probes.parquet"]) == 2
    assert "--out probes.parquet already exists; pass --overwrite" in one_error_line(capsys)


def test_analyze_replaces_its_files_only_with_overwrite_and_keeps_the_users(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("l.npy", np.random.default_rng(0).normal(size=(40, 5)))
    out = tmp_path / "res"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    argv = ["analyze", "l.npy", "--window", "8", "--out-dir", "res", "--no-plot"]
    assert main(argv) == 0
    capsys.readouterr()
    written = snapshot(out)
    assert main(argv) == 2
    assert "--out-dir res already holds series.csv, summary.json; pass --overwrite" in one_error_line(capsys)
    assert snapshot(out) == written
    assert main(argv + ["--overwrite"]) == 0
    assert (out / "mine.txt").read_text() == "keep"
    # its input is never one of its outputs
    assert main(["analyze", "res/series.csv", "--out-dir", "res", "--overwrite", "--no-plot"]) == 2
    assert "would write over this command's input (LOSSES res/series.csv)" in capsys.readouterr().err


def test_bench_resumes_its_own_grid_and_refuses_another_grids_report(tmp_path, capsys, monkeypatch):
    from probekit.cli.bench_cmd import _check_out_dir

    out = tmp_path / "b"
    _check_out_dir(str(out), "k1", overwrite=False)  # new directory
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"grid_key": "k1", "cells": []}))
    (out / "report.md").write_text("# report of k1\n")
    _check_out_dir(str(out), "k1", overwrite=False)  # the same grid: a resume
    with pytest.raises(ProbekitUsageError, match="already holds results.json, report.md of another benchmark; "
                                                 "pass --overwrite"):
        _check_out_dir(str(out), "k2", overwrite=False)
    _check_out_dir(str(out), "k2", overwrite=True)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "report.md").write_text("the user's own report")
    with pytest.raises(ProbekitUsageError, match="another benchmark"):
        _check_out_dir(str(tmp_path / "c"), "k1", overwrite=False)


# -- 2. modes follow the umask -------------------------------------------------------------
@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750),
                                                     (0o077, 0o600, 0o700)])
def test_atomic_outputs_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    with umask(mask):
        with atomic_file(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with atomic_directory(tmp_path / "d") as tmp:
            (tmp / "inner.txt").write_text("y")
        with staged_files(tmp_path / "s") as stage:
            (stage / "a.csv").write_text("z")
    assert mode(tmp_path / "f.txt") == file_mode
    assert mode(tmp_path / "d") == dir_mode and mode(tmp_path / "d" / "inner.txt") == file_mode
    assert mode(tmp_path / "s" / "a.csv") == file_mode


def test_replacing_a_file_keeps_its_mode(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    os.chmod(target, 0o664)
    with umask(0o077):
        with atomic_file(target) as tmp:
            tmp.write_text("new")
    assert target.read_text() == "new" and mode(target) == 0o664


def test_every_cli_output_is_readable_under_umask_022(selected, tmp_path, capsys):
    with umask(0o022):
        assert main(["select", "--strategy", "random", "--n", "4", "--data", "builtin:toy-text",
                     "--out", "p2.parquet"]) == 0
        for fmt, out in (("jsonl", "e.jsonl"), ("csv", "e.csv"), ("npy", "e.npy"), ("datasets", "e_ds")):
            assert main(["export", str(selected), "--format", fmt, "--out", out]) == 0
        assert main(["export", str(selected), "--format", "lm-eval", "--task", "t", "--out", "e.json"]) == 0
        np.save("l.npy", np.random.default_rng(0).normal(size=(30, 4)))
        assert main(["analyze", "l.npy", "--window", "8", "--out-dir", "an"]) == 0
    files = ["p2.parquet", "e.jsonl", "e.csv", "e.npy", "e.json", "e_ds/state.json", "an/series.csv",
             "an/summary.json", "an/analyze.png"]
    assert {f: mode(tmp_path / f) for f in files} == {f: 0o644 for f in files}
    assert mode(tmp_path / "e_ds") == 0o755


def test_a_trajectory_cache_is_shared_readable(tmp_path):
    from probekit.eval.store.runner import load_or_record

    with umask(0o022):
        traj = load_or_record("deep-linear-null", "small", 0, cache_dir=tmp_path / "cache")
    path = Path(traj.path)
    traj.close()
    assert mode(path) == 0o755
    assert {mode(p) for p in path.rglob("*") if p.is_file()} == {0o644}
    assert {mode(p) for p in path.rglob("*") if p.is_dir()} <= {0o755}


# -- 4. the pool a probe set came from is recognised -----------------------------------------
def test_export_with_the_very_pool_reuses_the_recorded_id_field(selected, text_pool, tmp_path, capsys):
    # It used to fail on the fingerprint unless --id-field was given again.
    assert main(["export", str(selected), "--format", "jsonl", "--data", str(text_pool), "--out", "e.jsonl"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == list(ProbeSet.load(selected).ids)
    assert all(r["example"]["uid"] == r["id"] for r in rows)


def test_a_row_shuffled_copy_of_the_pool_is_the_same_pool(selected, text_pool, tmp_path, capsys):
    lines = text_pool.read_text().splitlines()
    order = np.random.default_rng(5).permutation(len(lines))
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("".join(lines[i] + "\n" for i in order))
    assert main(["export", str(selected), "--format", "jsonl", "--data", str(shuffled), "--out", "e.jsonl"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    expected = {json.loads(line)["uid"]: pos for pos, line in enumerate(lines[i] for i in order)}
    assert [r["index"] for r in rows] == [expected[r["id"]] for r in rows]  # re-indexed into the copy
    assert [r["example"]["uid"] for r in rows] == list(ProbeSet.load(selected).ids)
    # a copy with one example changed is another pool: refused, naming the id field
    changed = tmp_path / "changed.jsonl"
    changed.write_text(text_pool.read_text().replace("sentence 7 ", "sentence seven ", 1))
    assert main(["export", str(selected), "--format", "jsonl", "--data", str(changed), "--out", "x.jsonl"]) == 1
    line = one_error_line(capsys)
    assert "(ids: column 'uid')" in line and "--ignore-fingerprint" in line


def test_inspect_on_a_text_pool_selection_skips_coverage_with_a_note(selected, capsys):
    # It used to print the summary, then exit 2: "the pool has no numeric columns to embed".
    assert main(["inspect", str(selected)]) == 0
    out = capsys.readouterr().out
    assert "12 probes, strategy 'random'" in out
    assert "coverage: skipped (the selection recorded no embedding, and the pool has no numeric columns" in out
    assert main(["inspect", str(selected), "--text-field", "prompt"]) == 0
    assert "coverage (TfidfSvdEmbedder(text_field='prompt'" in capsys.readouterr().out


def test_inspect_fails_before_printing_anything(selected, capsys):
    assert main(["inspect", str(selected), "--text-field", "nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == ("probekit inspect: error: column 'nope' is not in the pool; "
                                    "columns: uid, prompt, topic, label.")


def test_inspect_reuses_the_recorded_text_embedding(tmp_path, text_pool, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["select", "--strategy", "cluster", "--n", "8", "--data", str(text_pool), "--id-field", "uid",
                 "--text-field", "prompt", "--out", "c.parquet"]) == 0
    capsys.readouterr()
    assert main(["inspect", "c.parquet"]) == 0
    assert "coverage (TfidfSvdEmbedder(text_field='prompt'" in capsys.readouterr().out


# -- 5. the command line -------------------------------------------------------------------
def test_bench_report_records_the_real_command_line(tmp_path, monkeypatch, capsys):
    import probekit.eval.bench.run as bench
    import probekit.eval.reports.bench_figures as figures
    import probekit.eval.reports.report as report

    seen = {}

    def fake_report(result, out_dir, command):
        seen["command"] = command
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "report.md").write_text("r")
        return Path(out_dir) / "results.json", Path(out_dir) / "report.md"

    monkeypatch.setattr(bench, "run_grid", lambda grid, out_dir, **kw: bench.GridResult(grid, [], 0))
    monkeypatch.setattr(report, "write_report", fake_report)
    monkeypatch.setattr(figures, "write_figures", lambda *a, **k: [])
    out = str(tmp_path / "b")
    assert main(["-v", "bench", "--quick", "--families", "grokking", "--out-dir", out]) == 0
    assert seen["command"] == f"probekit -v bench --quick --families grokking --out-dir {out}"


def test_analyze_overwrite_without_a_plot_removes_the_stale_figure(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("l.npy", np.random.default_rng(0).normal(size=(40, 5)))
    assert main(["analyze", "l.npy", "--window", "8", "--out-dir", "res"]) == 0
    assert (tmp_path / "res" / "analyze.png").exists()
    assert main(["analyze", "l.npy", "--window", "16", "--out-dir", "res", "--no-plot"]) == 2
    assert "already holds series.csv, summary.json, analyze.png" in capsys.readouterr().err
    assert main(["analyze", "l.npy", "--window", "16", "--out-dir", "res", "--no-plot", "--overwrite"]) == 0
    assert not (tmp_path / "res" / "analyze.png").exists()  # a W=8 figure beside W=16 series would mislead


def test_warnings_are_one_line_naming_the_command(tmp_path):
    import subprocess
    import sys

    x = np.random.default_rng(0).normal(size=(40, 5))
    x[3] = np.nan
    np.save(tmp_path / "l.npy", x)
    proc = subprocess.run([sys.executable, "-m", "probekit", "analyze", str(tmp_path / "l.npy"), "--window", "8",
                           "--no-plot", "--out-dir", str(tmp_path / "o")], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # not Python's "file.py:92: ProbekitWarning: ..." followed by a line of source
    assert proc.stderr.splitlines() == ["probekit analyze: warning: rdm_series rejected 1 record(s) with NaN or "
                                        "inf losses."]


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    np.save(tmp_path / "big.npy", np.random.default_rng(0).normal(size=(6000, 400)))
    proc = subprocess.Popen([sys.executable, "-m", "probekit", "analyze", str(tmp_path / "big.npy"),
                             "--window", "64", "--out-dir", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not (tmp_path / "out").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the staging folder exists once the outputs are being written
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("analyze finished before the signal arrived")
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "probekit analyze: terminated"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
