"""Feedback on long work (bench, transitions run, select) and what ``probekit analyze`` says and draws.

A bar on a terminal only; off a terminal, progress lines at INFO, which ``probekit -v`` shows.
"""
from __future__ import annotations

import io
import logging
import re

import numpy as np
import pytest

from probekit import progress
from probekit.cli import main


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


BAR = re.compile(r"\d+%\||\d+/\d+ \[")  # what a tqdm bar draws


def infos(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]


# -- the helper --------------------------------------------------------------------------
def test_off_a_terminal_no_bar_and_a_line_per_update(capsys, caplog):
    caplog.set_level(logging.INFO)
    with progress.Progress(3, "cells", line="scored {n}/{total} cells") as bar:
        for k in range(3):
            bar.update(1, f"job {k}")
    assert not BAR.search(capsys.readouterr().err)
    assert infos(caplog) == ["scored 1/3 cells (job 0)", "scored 2/3 cells (job 1)", "scored 3/3 cells (job 2)"]


def test_on_a_terminal_a_bar_and_no_lines(monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr("sys.stderr", Terminal())
    with progress.Progress(3, "cells", unit="cell") as bar:
        for _ in range(3):
            bar.update()
    with progress.stage("k-means"):
        pass
    import sys

    assert "cells:" in sys.stderr.getvalue() and BAR.search(sys.stderr.getvalue())
    assert "k-means ..." in sys.stderr.getvalue()
    assert infos(caplog) == []


def test_worker_processes_draw_no_bar_even_on_a_terminal(monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr("sys.stderr", Terminal())
    monkeypatch.setattr(progress, "_BARS_OFF", False)
    progress.disable_bars()
    assert progress.bars_enabled() is False and progress.bars_enabled(True) is False
    monkeypatch.setattr(progress, "_BARS_OFF", False)
    assert progress.bars_enabled() is True and progress.bars_enabled(False) is False


def test_throttled_lines_keep_the_last(monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    clock = iter(range(0, 1000, 4))  # 4 s per step
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = progress.Progress(6, "grokking seed 0", every=10.0, line="{desc}: step {n}/{total}")
    for _ in bar.track(range(6)):
        pass
    # the clock reads 0 at the start, then 4, 8, 12, ...: a line at 12 s (3 steps), then the last one
    assert infos(caplog) == ["grokking seed 0: step 3/6", "grokking seed 0: step 6/6"]


def test_stage_lines_off_a_terminal(capsys, caplog):
    caplog.set_level(logging.INFO)
    with progress.stage("k-means: 8 clusters"):
        pass
    assert infos(caplog)[0] == "k-means: 8 clusters ..."
    assert re.fullmatch(r"k-means: 8 clusters: done in \d+\.\d s", infos(caplog)[1])
    assert capsys.readouterr().err == ""


# -- the commands --------------------------------------------------------------------------
def test_run_suite_says_each_trajectory(monkeypatch, caplog):
    from probekit.eval.store import suite

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(suite, "_one", lambda job: (job[0], job[2] == 1, 8.25))  # seed 1 recorded, 0 cached
    rows = suite.run_suite(["grokking", "grokking-null"], [0, 1], jobs=1, progress=None)
    assert rows == ["grokking", "grokking", "grokking-null", "grokking-null"]
    assert infos(caplog) == [
        "recorded 1/4 trajectories (grokking seed 0, cached)",
        "recorded 2/4 trajectories (grokking seed 1, 8.2 s)",
        "recorded 3/4 trajectories (grokking-null seed 0, cached)",
        "recorded 4/4 trajectories (grokking-null seed 1, 8.2 s)",
    ]
    caplog.clear()
    monkeypatch.setattr("sys.stderr", Terminal())
    suite.run_suite(["grokking"], [0, 1], jobs=1, progress=None)
    import sys

    assert "trajectories:" in sys.stderr.getvalue() and BAR.search(sys.stderr.getvalue()) and infos(caplog) == []


def test_bench_verbose_says_what_it_records_and_scores(tmp_path, caplog, capsys, monkeypatch, one_torch_thread):
    from probekit.eval.bench import grid as bench
    from probekit.eval.scoring.signals import SignalSpec

    small = bench.BenchGrid(families=("deep-linear",), seeds=(0, 1), designs=("random",), sizes=(8,),
                            signals=(SignalSpec("shc", window=16),), scalar_baselines=("mean_drop",))
    monkeypatch.setattr(bench, "QUICK", small)  # the command's default grid, made small
    caplog.set_level(logging.INFO)
    code = main(["-v", "bench", "--families", "deep-linear", "--jobs", "2", "--out-dir", str(tmp_path / "out"),
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    lines = infos(caplog)
    recorded = [x for x in lines if re.fullmatch(r"recorded \d/4 trajectories \(deep-linear(-null)? seed \d, .*\)", x)]
    assert len(recorded) == 4  # deep-linear and its null, 2 seeds, in the order they finish
    assert recorded[-1].startswith("recorded 4/4 trajectories (deep-linear")
    assert all(re.search(r"seed \d, \d+\.\d s\)$", x) for x in recorded)  # a cold cache: recorded now
    scored = [x for x in lines if x.startswith("scored ")]
    assert [x.split(" (")[0] for x in scored] == ["scored 1/2 cells", "scored 2/2 cells"]
    assert sorted(x.split(" (")[1] for x in scored) == ["deep-linear random)", "deep-linear scalar)"]
    assert not BAR.search(capsys.readouterr().err)  # stderr is not a terminal: no bar


def test_transitions_run_verbose(tmp_path, caplog, one_torch_thread):
    caplog.set_level(logging.INFO)
    assert main(["-v", "transitions", "run", "deep-linear", "--config", "small", "--cache-dir", str(tmp_path)]) == 0
    lines = infos(caplog)
    assert lines[0] == "run 1/1: deep-linear seed 0 (small)"
    assert "deep-linear seed 0: step 1500/1500" in lines
    assert any(x.startswith("recorded deep-linear seed 0 in ") for x in lines)


@pytest.mark.parametrize("strategy, stages", [
    ("cluster", [r"embedding 1797 examples \(numeric\)", r"k-means: \d+ clusters of 1797 points"]),
    ("gradient", [r"embedding 1797 examples \(numeric\)", r"gradient sketches: 1797 examples",
                  r"k-center order: 8/8 probes"]),
])
def test_select_verbose_names_each_long_stage(strategy, stages, tmp_path, caplog, capsys):
    caplog.set_level(logging.INFO)
    assert main(["-v", "select", "--strategy", strategy, "--n", "8", "--out", str(tmp_path / "p.parquet")]) == 0
    text = "\n".join(infos(caplog))
    for pattern in stages:
        assert re.search(pattern, text), (pattern, text)
    assert not BAR.search(capsys.readouterr().err)


# -- probekit analyze: names, legend, title ---------------------------------------------------
def planted(records: int = 160, probes: int = 20, onset: int = 100) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = 2.0 + 0.01 * rng.normal(size=(records, probes))
    x[:, :4] += (np.clip(np.arange(records) - onset, 0, None) * 0.05)[:, None]
    return x


@pytest.fixture
def figures(monkeypatch):
    import probekit.plotting

    drawn = []
    real = probekit.plotting.plot_analysis

    def keep(*args, **kwargs):
        drawn.append(real(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(probekit.plotting, "plot_analysis", keep)
    return drawn


def legend_texts(fig) -> list[str]:
    legend = fig.axes[0].get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def _title(fig) -> str:
    return " ".join(fig.get_suptitle().split())  # a long title wraps over lines


def test_analyze_says_record_when_the_file_has_no_steps(tmp_path, capsys, figures):
    np.save(tmp_path / "l.npy", planted())
    assert main(["analyze", str(tmp_path / "l.npy"), "--window", "16", "--out-dir", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\d+ alarm\(s\) at record\(s\) \d+", out) and "step(s)" not in out
    assert re.search(r"probes moving together at the strongest alarm, record \d+ ", out)
    (fig,) = figures
    assert fig.axes[-1].get_xlabel() == "record"
    assert _title(fig) == (f"{tmp_path / 'l.npy'} — SHC, W=16, "
                                        "running-min(ratio=10, persistence=3, min_history=1)")
    assert legend_texts(fig) == ["alarm (running-min)"]  # alarms drawn, no onsets: no onset entry


@pytest.mark.parametrize("layout", ["npz", "csv"])
def test_analyze_says_step_when_the_file_has_steps(layout, tmp_path, capsys, figures):
    x, steps = planted(), np.arange(160) * 10
    if layout == "npz":
        path = tmp_path / "l.npz"
        np.savez(path, losses=x, steps=steps)
    else:
        path = tmp_path / "l.csv"
        path.write_text("step," + ",".join(f"p{j}" for j in range(x.shape[1])) + "\n" + "".join(
            f"{s}," + ",".join(repr(float(v)) for v in row) + "\n" for s, row in zip(steps, x)))
    assert main(["analyze", str(path), "--window", "16", "--out-dir", str(tmp_path / "o")]) == 0
    assert re.search(r"alarm\(s\) at step\(s\) \d+0\b", capsys.readouterr().out)
    assert figures[0].axes[-1].get_xlabel() == "training step"


def test_analyze_legend_lists_only_what_is_drawn(tmp_path, capsys, figures):
    np.save(tmp_path / "quiet.npy", np.random.default_rng(1).normal(size=(120, 10)))
    assert main(["analyze", str(tmp_path / "quiet.npy"), "--window", "16", "--detrend", "linear",
                 "--alarm-param", "ratio=1e9", "--out-dir", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "0 alarm(s)\n" in out and "none" not in out
    (fig,) = figures
    assert fig.axes[0].get_legend() is None  # no alarms, no onsets: nothing to explain
    assert _title(fig).endswith(
        " — SHC, W=16, detrend linear, running-min(ratio=1e+09, persistence=3, min_history=1)")


def test_analyze_demo_legend_has_alarms_and_onsets(tmp_path, capsys, figures):
    assert main(["analyze", "--alarm-param", "memory=50", "--out-dir", str(tmp_path / "o")]) == 0
    (fig,) = figures
    assert legend_texts(fig) == ["alarm (running-min)", "transition onset (ground truth)"]
    assert fig.axes[-1].get_xlabel() == "training step"
    assert _title(fig) == ("built-in demo: deep linear network, seed 0 — SHC, W=32, "
                                        "running-min(ratio=10, persistence=3, min_history=1, memory=50)")
    assert "alarm(s) at step(s)" in capsys.readouterr().out
