"""The benchmark figures on the tiny grid: every PNG written, and failed cells skipped, not fatal."""
from __future__ import annotations

import copy
import dataclasses

import pytest

from probekit.eval.bench import GridResult, run_grid
from probekit.eval.reports.bench_figures import result_from_json, write_figures
from probekit.eval.reports.report import write_report
from probekit.eval.scoring import design_score

from bench_grids import TINY

NAMES = sorted(f"{kind}-{fam}.png" for kind in ("convergence", "lead-vs-far", "signals") for fam in TINY.families)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, trajectory_cache, one_torch_thread):
    return run_grid(TINY, tmp_path_factory.mktemp("bench"), cache_dir=trajectory_cache, progress=False)


def _assert_pngs(paths, names):
    assert [p.name for p in paths] == names and paths == sorted(paths)
    for p in paths:
        assert p.parent.name == "figures" and p.stat().st_size > 1000
        assert p.read_bytes()[:4] == b"\x89PNG"


def test_every_figure_is_written(tiny, tmp_path, trajectory_cache, monkeypatch):
    assert not any(c.error for c in tiny.cells)
    from probekit.eval.bench import Design

    def no_selection(*args, **kwargs):
        raise AssertionError("the figures must read the rankings stored with the cells, not select again")

    monkeypatch.setattr(Design, "ranking", no_selection)
    paths = write_figures(tiny, tmp_path, cache_dir=trajectory_cache)
    _assert_pngs(paths, NAMES)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == NAMES


def test_a_result_reads_back_from_results_json(tiny, tmp_path):
    json_path, _ = write_report(tiny, tmp_path, "probekit bench (test)")
    again = result_from_json(json_path)  # what write_figures needs to redraw a finished benchmark
    assert again.grid == TINY and again.grid.key() == TINY.key() and len(again.cells) == len(tiny.cells)
    assert again.rankings == tiny.rankings and len(tiny.rankings) == 4  # 2 families x 2 designs
    for got, cell in zip(again.cells, tiny.cells):  # every number as computed, but the curves to 1e-4
        got, cell = got.to_json(), cell.to_json()
        curves = [(q.pop("curve"), p.pop("curve")) for q, p in zip(got["points"], copy.deepcopy(cell)["points"])]
        assert got == {**cell, "points": [{k: v for k, v in p.items() if k != "curve"} for p in cell["points"]]}
        for q, p in curves:
            for key in p:
                assert q[key] == pytest.approx(p[key], abs=5e-5)


def _with_lead(cell, fraction):
    first = cell.points[0]
    at = dataclasses.replace(first.at_far_5pct, mean_lead_fraction=fraction)
    return dataclasses.replace(cell, points=(dataclasses.replace(first, at_far_5pct=at), *cell.points[1:]))


def test_a_failed_cell_is_skipped(tiny, tmp_path, trajectory_cache, monkeypatch):
    cells = []
    for c in tiny.cells:
        if (c.family, c.design) == ("late-bias", "random"):
            c = dataclasses.replace(c, points=(), error="RuntimeError: boom")
        elif (c.family, c.design) == ("deep-linear", "cluster"):
            c = _with_lead(c, 2.0)  # the best design: drawn with random
        cells.append(c)
    drawn = []
    real = design_score.trajectory_signal
    monkeypatch.setattr(design_score, "trajectory_signal",
                        lambda traj, probes, spec: drawn.append((traj.name, len(probes))) or real(traj, probes, spec))
    paths = write_figures(GridResult(TINY, cells, rankings=tiny.rankings), tmp_path, cache_dir=trajectory_cache)
    _assert_pngs(paths, NAMES)
    assert drawn == [("deep-linear", 8), ("deep-linear", 8), ("late-bias", 8)]  # random + best; best only


def test_a_family_with_only_failed_cells_gets_no_figures(tiny, tmp_path, trajectory_cache):
    cells = [dataclasses.replace(c, points=(), error="RuntimeError: boom") if c.family == "late-bias" else c
             for c in tiny.cells]
    paths = write_figures(GridResult(TINY, cells), tmp_path, cache_dir=trajectory_cache)
    _assert_pngs(paths, [n for n in NAMES if "late-bias" not in n])


def test_the_convergence_figure_has_a_detection_panel_and_draws_older_cells_without_it(tiny, tmp_path, trajectory_cache,
                                                                                        monkeypatch):
    from probekit.eval.reports import bench_figures

    panels = []
    real = bench_figures._save

    def save(fig, path):
        if path.name.startswith("convergence-"):
            panels.append([ax.get_ylabel().split("\n")[0] for ax in fig.axes])
        return real(fig, path)

    monkeypatch.setattr(bench_figures, "_save", save)
    write_figures(GridResult(TINY, tiny.cells, rankings=tiny.rankings), tmp_path / "new", cache_dir=trajectory_cache)
    assert panels[0] == ["warning: mean lead", "detection rate at 5% FAR", "fidelity (rank corr."]
    assert all(p.has_detection for c in tiny.cells for p in c.points)

    def without_detection(cell):  # a cell of schema 2: no detection fields
        points = tuple(dataclasses.replace(p, at_far_5pct=dataclasses.replace(
            p.at_far_5pct, detected=None, median_latency=None, mean_latency_fraction=None, latencies=None,
            latency_fractions=None), at_far_5pct_by_seed=tuple(dataclasses.replace(
                s, detected=None, median_latency=None, mean_latency_fraction=None) for s in p.at_far_5pct_by_seed))
            for p in cell.points)
        return dataclasses.replace(cell, points=points)

    old = GridResult(TINY, [without_detection(c) for c in tiny.cells], rankings=tiny.rankings)
    paths = write_figures(old, tmp_path / "old", cache_dir=trajectory_cache)
    assert {p.name for p in paths} >= {f"convergence-{f}.png" for f in TINY.families}
    _, md = write_report(old, tmp_path / "old", "x")
    assert "| random | 8 | n/a | n/a |" in md.read_text()  # the detection table says what it cannot know
