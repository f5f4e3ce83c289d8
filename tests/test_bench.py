"""The benchmark grid end to end on tiny configurations: report, determinism, resume, failed cells, CLI."""
from __future__ import annotations

import dataclasses
import json
import re

import pytest

from probekit.cli import main
from probekit.eval.bench import BenchGrid, Design, run_grid
from probekit.eval.reports.report import write_report
from probekit.eval.scoring.signals import SignalSpec

from bench_grids import TINY



def test_tiny_grid_end_to_end_and_identical_on_rerun(tmp_path, trajectory_cache, one_torch_thread):
    first = run_grid(TINY, tmp_path / "a", cache_dir=trajectory_cache, progress=False)
    assert first.computed == 6 and not any(c.error for c in first.cells)
    assert [(c.family, c.design) for c in first.cells] == [
        ("deep-linear", "random"), ("deep-linear", "cluster"), ("deep-linear", "scalar"),
        ("late-bias", "random"), ("late-bias", "cluster"), ("late-bias", "scalar"),
    ]
    sizes = [[p.size for p in c.points] for c in first.cells]
    assert sizes == [[8, 0], [8, 0], [0]] * 2  # each prefix, then the full pool; scalars on the full pool
    for c in first.cells:
        expected = 3 * 2 if c.family == "deep-linear" else 1 * 2  # small deep-linear: 3 modes; 2 seeds
        assert all(p.fixed_threshold["episodes"] == expected for p in c.points)
        assert all(len(p.at_far_5pct.leads) == expected for p in c.points)
    json_a, md = write_report(first, tmp_path / "a", "probekit bench (test)")
    report = md.read_text()
    assert "| random | 8 |" in report and "| scalar:mean_drop | full |" in report
    # the verdict: the paired tests against random (2 seeds: nothing can be significant), then the best-of with its
    # count beside the pick made on the other family
    assert ("- **late-bias**: no design can be told from random, under warning or detection (2 seeds: the smallest "
            "possible p-value is 0.5; nothing can be called different); ") in report
    assert re.search(r"  - (no 2RDM configuration \(of 4\) gives early warning|best of 4 2RDM configurations: )"
                     r".*; picked on the other families \(of 4\): ", report)
    assert "Leave-one-family-out" in report and "- deep-linear: chosen " in report
    # both scores in the main tables, each design row marked against random; the counts the rates rest on
    assert "### Warning: median lead" in report and "### Detection: median latency" in report
    assert re.search(r"\| cluster \| 8 \| [^|]* ≈ \| [^|]* ≈ \|", report)
    # the small late-bias pool holds its slice at the small preset's training prevalence: 102 of 512
    assert ("| late-bias | 512 (slice 102 = 19.9%) | 2 | 4 (2 + 2) | 25.0% | 2 | 2 | 0.5 (2 seeds) | "
            "5% FAR = no false alarm at all; ") in report
    data = json.loads(json_a.read_text())
    assert data["schema_version"] == 3 and [t["family"] for t in data["paired"]] == ["deep-linear", "late-bias"]
    point = data["cells"][0]["points"][0]
    assert point["quiet_units"] == 6 + 2 and point["null_runs"] == 2  # deep-linear: 2 nulls + 6 quiet periods
    assert len(point["at_far_5pct"]["latencies"]) == 6 and "detected" in point["at_far_5pct_by_seed"][0]

    second = run_grid(TINY, tmp_path / "b", cache_dir=trajectory_cache, progress=False)  # a fresh directory: recomputed
    json_b, _ = write_report(second, tmp_path / "b", "probekit bench (test)")
    assert second.computed == 6 and json_a.read_bytes() == json_b.read_bytes()


def test_resume_computes_only_missing_cells(tmp_path, trajectory_cache, one_torch_thread):
    run_grid(TINY, tmp_path, cache_dir=trajectory_cache, progress=False)
    cell_files = sorted((tmp_path / "cells" / TINY.key()).glob("*.json"))
    assert len(cell_files) == 6
    cell_files[2].unlink()  # as if the run had been killed before this cell
    resumed = run_grid(TINY, tmp_path, cache_dir=trajectory_cache, progress=False)
    assert resumed.computed == 1 and len(resumed.cells) == 6


def test_a_failing_cell_is_recorded_not_fatal(tmp_path, trajectory_cache, one_torch_thread):
    broken = Design("cluster", (("embedding_field", "no_such_column"),), name="broken")
    grid = BenchGrid(families=("deep-linear",), seeds=(0,), designs=("random", broken), sizes=(8,),
                     signals=(SignalSpec("shc", window=16),), scalar_baselines=())
    result = run_grid(grid, tmp_path, cache_dir=trajectory_cache, progress=False)
    errors = {c.design: c.error for c in result.cells}
    assert errors["random"] is None
    assert errors["broken"].startswith("ProbekitUsageError: The 'embedding_field' parameter of ClusterSelector")
    _, md = write_report(result, tmp_path, "x")
    assert "## Failed cells" in md.read_text()


def test_cli_bench_writes_the_report(tmp_path, trajectory_cache, capsys, one_torch_thread):
    code = main(["bench", "--families", "deep-linear", "--out-dir", str(tmp_path / "out"), "--jobs", "1",
                 "--cache-dir", str(trajectory_cache)])
    out = capsys.readouterr().out
    assert code == 0
    assert "| design | size | deep-linear |" in out and "| gradient | 32 |" in out
    assert (tmp_path / "out" / "results.json").exists() and (tmp_path / "out" / "report.md").exists()
    assert sorted(p.name for p in (tmp_path / "out" / "figures").glob("*.png")) == [
        "convergence-deep-linear.png", "lead-vs-far-deep-linear.png", "signals-deep-linear.png"]
    assert re.search(r"\d+ cells computed, 0 resumed", out)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--families", "deep-linear-null"], r"'deep-linear-null' is a null control; name its family \(deep-linear\)"),
        (["--families", "grokin"], r"Unknown reference run 'grokin'\. Did you mean: grokking"),
        (["--jobs", "0"], r"argument --jobs: must be an int >= 1\. Got 0 instead\."),
    ],
)
def test_cli_bench_usage_errors(argv, message, capsys, tmp_path):
    assert main(["bench", *argv, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err)
    assert not (tmp_path / "results.json").exists()


def test_signal_and_rule_axes(tmp_path, trajectory_cache, one_torch_thread, monkeypatch):
    from probekit.eval.bench import RuleSpec

    grid = BenchGrid(families=("late-bias",), seeds=(0, 1), designs=("random",), sizes=(8,),
                     signals=(SignalSpec("shc", window=16), SignalSpec("shc", window=8, stride=2)),
                     rules=(RuleSpec(), RuleSpec("zscore", (("transform", "log"),))), scalar_baselines=("mean_drop",))
    ranked = []
    real = Design.ranking
    monkeypatch.setattr(Design, "ranking",
                        lambda d, run, t, n: ranked.append((d.label, t.name, t.seed)) or real(d, run, t, n))
    result = run_grid(grid, tmp_path, cache_dir=trajectory_cache, progress=False)
    # one job per (family, design): each trajectory ranked once for all signals and rules
    assert sorted(ranked) == sorted(("random", n, s) for n in ("late-bias", "late-bias-null") for s in (0, 1))
    assert [(c.design, c.signal["window"], c.signal["stride"], c.rule["name"]) for c in result.cells] == [
        ("random", 16, 1, "running-min"), ("random", 16, 1, "zscore"),
        ("random", 8, 2, "running-min"), ("random", 8, 2, "zscore"),
        ("scalar", 16, 1, "running-min"), ("scalar", 16, 1, "zscore")]
    assert not any(c.error for c in result.cells)
    assert len({json.dumps(c.to_json()["points"], sort_keys=True) for c in result.cells}) == 6  # every axis changes the score
    files = sorted(p.name for p in (tmp_path / "cells" / grid.key()).glob("*.json"))
    assert "late-bias__random__shc-W8-k2-none__zscore-transformlog.json" in files and len(files) == 6
    for c in result.cells:  # the seed spread: one entry per seed at every point
        assert all(len(p.at_far_5pct_by_seed) == 2 for p in c.points)
    _, md = write_report(result, tmp_path, "probekit bench (test)")
    report = md.read_text()
    assert "## Probe designs: shc W=16, rule `running-min`" in report
    assert "## Signal and rule axes" in report and "| shc W=8, stride 2 | `zscore(transform=log)` |" in report
    assert "| scalar:mean_drop | `zscore(transform=log)` |" in report
    assert report.count("<details>") == 4 and "<summary>shc W=8, stride 2, rule <code>running-min</code></summary>" in report
    assert "Leave-one-family-out" not in report  # one family: no other family to pick on
    from probekit.eval.reports.bench_figures import result_from_json, write_figures

    assert result_from_json(tmp_path / "results.json").grid == grid  # the rules survive the JSON
    assert [p.name for p in write_figures(result, tmp_path, cache_dir=trajectory_cache)] == [
        "convergence-late-bias.png", "lead-vs-far-late-bias.png", "signals-late-bias.png"]


def test_a_worker_that_dies_fails_only_its_own_cells(tmp_path, trajectory_cache, one_torch_thread, monkeypatch):
    from bench_crash_helper import score_job_or_crash

    from probekit.eval.bench import run as bench

    monkeypatch.setattr(bench, "_score_job", score_job_or_crash)  # workers import it by module name
    grid = BenchGrid(families=("deep-linear",), seeds=(0,), designs=("random", "cluster"), sizes=(8,),
                     signals=(SignalSpec("shc", window=16),), scalar_baselines=("mean_drop",))
    result = run_grid(grid, tmp_path, jobs=2, cache_dir=trajectory_cache, progress=False)
    errors = {c.design: c.error for c in result.cells}
    assert errors["random"] is None and errors["scalar"] is None  # lost with the broken pool, then rerun alone
    assert errors["cluster"] == ("the worker process died while computing this cell (a crash or the "
                                 "out-of-memory killer)")
    monkeypatch.undo()
    again = run_grid(grid, tmp_path, jobs=1, cache_dir=trajectory_cache, progress=False)  # a rerun retries the failed cell
    assert again.computed == 1 and all(c.error is None for c in again.cells)


def test_a_family_registered_only_through_the_registry_is_benchmarked(tmp_path, trajectory_cache, capsys, one_torch_thread):
    from probekit.eval.families.deep_linear import DeepLinear, DeepLinearNull
    from probekit.registry import TRANSITIONS

    class ToyLinear(DeepLinear):
        name, summary = "toy-linear", "the deep linear network under another name"

    class ToyLinearNull(DeepLinearNull):
        name, control_of = "toy-linear-null", "toy-linear"

    TRANSITIONS.register("toy-linear", ToyLinear)
    TRANSITIONS.register("toy-linear-null", ToyLinearNull)
    try:
        from probekit.eval.bench import transition_families

        assert "toy-linear" in transition_families() and "toy-linear-null" not in transition_families()
        code = main(["bench", "--families", "toy-linear", "--designs", "random", "--out-dir", str(tmp_path / "out"),
                     "--jobs", "1", "--cache-dir", str(trajectory_cache)])
        report = capsys.readouterr().out
        assert code == 0 and "| design | size | toy-linear |" in report and "| random | 8 |" in report
        assert any(p.parents[1].name == "toy-linear-null" for p in trajectory_cache.glob("*/*/manifest.json"))  # its null ran
    finally:
        TRANSITIONS.unregister("toy-linear")
        TRANSITIONS.unregister("toy-linear-null")


def test_null_controls_can_have_seeds_of_their_own(tmp_path, trajectory_cache, one_torch_thread):
    grid = BenchGrid(families=("deep-linear",), seeds=(0,), null_seeds=(0, 1, 2), designs=("random",), sizes=(8,),
                     signals=(SignalSpec("shc", window=16),), scalar_baselines=())
    assert grid.control_seeds == (0, 1, 2) and BenchGrid(seeds=(4,)).control_seeds == (4,)
    result = run_grid(grid, tmp_path, cache_dir=trajectory_cache, progress=False)
    (cell,) = result.cells
    point = cell.points[0]
    assert point.null_runs == 3  # one quiet unit per null seed
    assert point.quiet_units == 3 + point.fixed_threshold["episodes"]  # and the episodes' quiet periods
    assert sorted(result.rankings[("deep-linear", "random")].runs) == [
        "deep-linear-null/0", "deep-linear-null/1", "deep-linear-null/2", "deep-linear/0"]


def test_every_design_of_a_family_is_scored_after_the_longest_pilot(tmp_path, trajectory_cache, one_torch_thread):
    # response selects on the first records of each run; random must be scored on the same records
    # (and quiet units), or their paired comparison would compare different spans.
    plain = BenchGrid(families=("late-bias",), seeds=(0,), designs=("random",), sizes=(8,),
                      signals=(SignalSpec("shc", window=16),), scalar_baselines=())
    both = dataclasses.replace(plain, designs=("random", "response"))
    pilot = both.pilot_for("late-bias")
    assert pilot > 0 and plain.pilot_for("late-bias") == 0
    alone = run_grid(plain, tmp_path / "a", cache_dir=trajectory_cache, progress=False).cells[0]
    cells = {c.design: c for c in run_grid(both, tmp_path / "b", cache_dir=trajectory_cache, progress=False).cells}
    ttos = {d: [e["time_to_onset"] for e in c.points[0].episodes] for d, c in cells.items()}
    assert ttos["random"] == ttos["response"]
    assert [e["time_to_onset"] for e in alone.points[0].episodes] != ttos["random"]  # the pilot was cut off
