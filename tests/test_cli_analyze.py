"""``probekit analyze`` end to end: outputs, planted transitions, errors and exit codes."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from probekit.cli import main
from probekit.eval.families.deep_linear import DeepLinearConfig, run_deep_linear
from probekit.rdm import rdm_series

ROOT = Path(__file__).resolve().parents[1]


def planted_matrix(seed: int = 0, records: int = 200, probes: int = 40, onset: int = 120):
    """Quiet noise, then probes 0-4 start drifting together at ``onset``."""
    rng = np.random.default_rng(seed)
    x = 2.0 + 0.01 * rng.normal(size=(records, probes))
    ramp = np.clip(np.arange(records) - onset, 0, None) * 0.05
    x[:, :5] += ramp[:, None] * np.array([1.0, 0.9, 0.8, 0.7, 0.6])
    return x


def read_csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_default_main_job_analyzes_the_builtin_demo(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "built-in demo: deep linear network" in printed
    assert (out / "analyze.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    demo = run_deep_linear(DeepLinearConfig(seed=0))
    assert summary["ground_truth_onset_steps"] == demo.onset_steps.tolist()
    assert summary["records"] == len(demo.steps) and summary["probes"] == demo.losses.shape[1]
    rows = read_csv_rows(out / "series.csv")
    assert len(rows) == len(demo.steps)
    i = 400  # every record admitted (stride 1, no NaN): row i is record i, its window records i-31..i
    eigenvalues = np.linalg.eigvalsh(np.cov(np.asarray(demo.losses[i - 31 : i + 1], dtype=np.float64), rowvar=False))
    expected = eigenvalues.var()  # SHC: the variance of all n eigenvalues of C, from the dense n x n matrix
    assert int(rows[i]["step"]) == demo.steps[i]
    assert float(rows[i]["shc"]) == pytest.approx(expected, rel=1e-9)
    assert rows[0]["shc"] == ""  # no value before the window is full
    assert sum(int(r["alarm"]) for r in rows) == len(summary["alarms"]) >= 1
    # No staging directory is left behind.
    assert sorted(p.name for p in out.iterdir()) == ["analyze.png", "series.csv", "summary.json"]


def test_planted_transition_in_a_parquet_file_names_the_moving_probes(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = planted_matrix()
    names = [f"probe_{j}" for j in range(x.shape[1])]
    table = pa.table({"step": np.arange(len(x)) * 10, **{n: x[:, j] for j, n in enumerate(names)}})
    pq.write_table(table, tmp_path / "losses.parquet")
    out = tmp_path / "res"
    code = main(["analyze", str(tmp_path / "losses.parquet"), "--window", "16", "--top", "5",
                 "--out-dir", str(out), "--no-plot"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    steps = [a["step"] for a in summary["alarms"]]
    assert steps and all(s >= 1200 for s in steps)  # onset at record 120, step 1200
    assert steps[0] <= 1300
    top = [p["probe"] for p in summary["focus"]["top_probes"]]
    assert sorted(top) == [f"probe_{j}" for j in range(5)]
    assert not (out / "analyze.png").exists()
    assert "probe_0" in capsys.readouterr().out


def test_inv_pr_the_signal_the_bench_scores_is_accepted(tmp_path, capsys):
    x = planted_matrix()
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "x.npy"), "--signal", "inv_pr", "--window", "16",
                 "--out-dir", str(out), "--no-plot"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["signal"] == "inv_pr" and summary["alarms"]
    for alarm in summary["alarms"]:
        r = alarm["record"]  # stride 1, nothing rejected: the window is records r-15..r
        eigenvalues = np.linalg.eigvalsh(np.cov(x[r - 15 : r + 1], rowvar=False))
        expected = (eigenvalues**2).sum() / eigenvalues.sum() ** 2  # 1 / PR from the dense n x n matrix
        assert alarm["signal"] == pytest.approx(expected, rel=1e-9)
    assert "on inv_pr:" in capsys.readouterr().out


def test_a_signal_with_no_value_anywhere_has_no_focus(tmp_path, capsys):
    # constant losses: every window is degenerate, trace 0, so the leading share is 0 / 0 everywhere
    np.save(tmp_path / "flat.npy", np.ones((40, 5)))
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "flat.npy"), "--signal", "leading_share", "--window", "16",
                 "--out-dir", str(out), "--no-plot"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["alarms"] == [] and summary["focus"] is None
    assert "probes moving together" not in capsys.readouterr().out


def test_npz_with_steps_and_ids_and_a_rejected_record(tmp_path):
    x = planted_matrix(records=120, onset=80)
    x[50, 3] = np.nan
    np.savez(tmp_path / "l.npz", losses=x, steps=np.arange(120) * 5,
             probe_ids=np.array([f"ex{j}" for j in range(x.shape[1])]))
    out = tmp_path / "o"
    with pytest.warns(Warning, match="rejected 1 record"):
        assert main(["analyze", str(tmp_path / "l.npz"), "--window", "10", "--no-plot",
                     "--alarm", "zscore", "--alarm-param", "baseline=20", "--out-dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rejected_records"] == 1 and summary["records"] == 119
    assert summary["alarm_rule"] == "zscore" and summary["alarm_params"]["baseline"] == 20
    assert summary["focus"]["top_probes"][0]["probe"].startswith("ex")


def test_csv_input_without_steps(tmp_path):
    x = planted_matrix(records=60, probes=6, onset=40)
    header = ",".join(f"c{j}" for j in range(6))
    np.savetxt(tmp_path / "l.csv", x, delimiter=",", header=header, comments="")
    out = tmp_path / "o"
    assert main(["analyze", str(tmp_path / "l.csv"), "--window", "8", "--no-plot",
                 "--detrend", "linear", "--out-dir", str(out)]) == 0
    rows = read_csv_rows(out / "series.csv")
    assert [int(r["step"]) for r in rows[:3]] == [0, 1, 2]


def test_no_partial_output_when_a_late_step_fails(tmp_path, monkeypatch, capsys):
    import probekit.plotting

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(probekit.plotting, "plot_analysis", broken)
    out = tmp_path / "o"
    np.save(tmp_path / "l.npy", planted_matrix())
    assert main(["analyze", str(tmp_path / "l.npy"), "--out-dir", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["probekit analyze: error: disk full"]
    assert not out.exists()  # neither series.csv nor summary.json, nor staging, nor the folder it made


def _write_bad_inputs(tmp_path: Path) -> dict[str, Path]:
    files = {}
    np.save(tmp_path / "vector.npy", np.arange(5.0))
    files["vector"] = tmp_path / "vector.npy"
    (tmp_path / "losses.txt").write_text("1,2\n")
    files["txt"] = tmp_path / "losses.txt"
    (tmp_path / "text.csv").write_text("a,b\nx,1\ny,2\n")
    files["text_csv"] = tmp_path / "text.csv"
    (tmp_path / "steps.csv").write_text("step,a\n3,1\n2,2\n")
    files["steps_csv"] = tmp_path / "steps.csv"
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    files["corrupt"] = tmp_path / "corrupt.npy"
    np.savez(tmp_path / "two.npz", a=np.zeros((3, 2)), b=np.zeros(3))
    files["npz"] = tmp_path / "two.npz"
    np.save(tmp_path / "ok.npy", np.random.default_rng(0).normal(size=(40, 4)))
    files["ok"] = tmp_path / "ok.npy"
    np.save(tmp_path / "few.npy", np.random.default_rng(0).normal(size=(10, 4)))
    files["few"] = tmp_path / "few.npy"
    np.save(tmp_path / "nan.npy", np.full((20, 4), np.nan))
    files["nan"] = tmp_path / "nan.npy"
    return files


@pytest.mark.parametrize(
    "args,match",
    [
        (["{missing}"], r"loss file '.*missing.npy' does not exist"),
        (["{txt}"], r"unsupported extension '.txt'; allowed: .npy, .npz, .parquet, .csv"),
        (["{vector}"], r"must hold a non-empty 2-D \[records, probes\] matrix; got shape \(5,\)"),
        (["{text_csv}"], r"column 'a' of text.csv is string, not numeric"),
        (["{steps_csv}"], r"steps in 'steps.csv' must increase strictly"),
        (["{text_csv}", "--steps-column", "t"], r"--steps-column 't' is not a column of text.csv"),
        (["{ok}", "--steps-column", "t"], r"--steps-column applies to parquet and csv files"),
        (["{corrupt}"], r"cannot read loss file 'corrupt.npy'"),
        (["{npz}"], r"holds a, b but no array named 'losses'"),
        (["{ok}", "--window", "1"], r"argument --window: must be an int >= 2\. Got 1 instead\."),
        (["{ok}", "--window", "41"], r"needs at least window=41 usable records .* got 40 of 40 rows"),
        (["{ok}", "--top-k", "-1"], r"argument --top-k: must be an int >= 1\. Got -1 instead\."),
        (["--demo-seed", "-1"], r"argument --demo-seed: must be an int >= 0\. Got -1 instead\."),
        (["{few}"], r"needs at least window=32 usable records .* got 10 of 10 rows"),
        (["{nan}", "--window", "4"], r"got 0 of 20 rows, 20 rejected for NaN/inf"),
        (["{ok}", "--detrend", "cubic"], r"'detrend' parameter .* one of 'none', 'linear', 'diff'\. Got 'cubic'"),
        (["{ok}", "--alarm", "zscor"], r"Unknown alarm rule 'zscor'\. Did you mean: zscore\?"),
        (["{ok}", "--alarm-param", "ratio"], r"--alarm-param takes KEY=VALUE; got 'ratio'"),
        (["{ok}", "--alarm-param", "rate=3"], r"Invalid parameter 'rate' for alarm rule 'running-min'"),
        (["{ok}", "--signal", "pr"],
         r"'signal' parameter of analyze must be one of 'shc', 'inv_pr', 'leading_share', 'trace', 'lambda_1'\. Got 'pr'"),
        (["{ok}", "--top", "0"], r"argument --top: must be an int >= 1\. Got 0 instead\."),
    ],
)
def test_usage_errors_exit_2_with_one_line_and_no_output(tmp_path, capsys, args, match):
    files = _write_bad_inputs(tmp_path)
    files["missing"] = tmp_path / "missing.npy"
    argv = ["analyze"] + [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    out = tmp_path / "out"
    assert main(argv + ["--out-dir", str(out), "--no-plot"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("probekit analyze: error: ")
    import re

    assert re.search(match, err[0]), err[0]
    assert not out.exists() or list(out.iterdir()) == []


def test_runtime_error_exit_1_and_debug_adds_only_a_traceback(tmp_path, capsys, monkeypatch):
    import probekit.plotting

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(probekit.plotting, "plot_analysis", broken)
    np.save(tmp_path / "ok.npy", np.random.default_rng(0).normal(size=(40, 4)))
    argv = ["analyze", str(tmp_path / "ok.npy"), "--out-dir", str(tmp_path / "o")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["probekit analyze: error: disk full"]
    for debug_argv in (["--debug"] + argv, argv + ["--debug"]):  # before or after the subcommand
        assert main(debug_argv) == 1  # --debug adds the traceback; the exit code stays
        err = capsys.readouterr().err.strip().splitlines()
        assert err[0] == "Traceback (most recent call last):" and "OSError: disk full" in err
        assert err[-1] == "probekit analyze: error: disk full"


def test_debug_keeps_usage_errors_at_exit_2(tmp_path, capsys):
    # --debug used to turn a usage error into exit 1 (it re-raised).
    for argv in (["--debug", "analyze", "--top", "0"], ["analyze", "--top", "0", "--debug"]):
        assert main(argv + ["--out-dir", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[0] == "Traceback (most recent call last):"
        assert err[-1] == "probekit analyze: error: argument --top: must be an int >= 1. Got 0 instead."


def test_argparse_errors_are_one_line_exit_2():
    proc = subprocess.run([sys.executable, "-m", "probekit", "analyze", "--window", "abc"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["probekit analyze: error: argument --window: invalid int value: 'abc' "
                     "(see 'probekit analyze --help')"]


def test_top_level_help_version_and_no_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    from probekit import __version__

    assert capsys.readouterr().out.strip() == f"probekit {__version__}"
    assert main([]) == 2
    assert "analyze" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "probekit analyze losses.npy" in text
    # --signal's help and the epilog's table come from the signal table: every signal with its doc line
    assert "signal the alarm reads (default shc): shc, inv_pr, leading_share, trace, lambda_1" in " ".join(text.split())
    assert "  inv_pr          1 / participation ratio, in [1/rank, 1]" in text


def test_deep_linear_demo_learns_modes_in_order_after_a_plateau():
    run = run_deep_linear(DeepLinearConfig(seed=1))
    onsets = run.onset_steps
    assert (onsets > 0).all() and np.all(np.diff(onsets) > 0)  # strongest mode first
    assert onsets[0] > 32 * run.config.record_every  # a full window of plateau first
    assert np.all(run.midpoint_steps > onsets)
    assert run.mode_strength[-1] == pytest.approx(np.ones(4), abs=0.01)
    assert run.losses.dtype == np.float32 and run.losses.shape == (601, 256)
    # PR of the Gram route stays within [1, rank] everywhere, even at tiny variance.
    series = rdm_series(run.losses, window=32)
    pr = series.pr[np.isfinite(series.pr)]
    assert pr.min() >= 1.0 - 1e-9 and pr.max() <= 31 + 1e-9


def test_closed_stdout_pipe_stops_quietly(tmp_path):
    np.save(tmp_path / "ok.npy", planted_matrix())
    proc = subprocess.run(
        f"{sys.executable} -m probekit analyze {tmp_path / 'ok.npy'} --no-plot "
        f"--out-dir {tmp_path / 'o'} | head -1",
        shell=True, capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.stderr == ""
    assert len(proc.stdout.splitlines()) == 1
    assert (tmp_path / "o" / "summary.json").is_file()


def test_plain_loop_example_runs_in_tiny_mode(tmp_path):
    out = tmp_path / "losses.npz"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "plain_loop_2rdm.py"), "--steps", "120",
         "--window", "8", "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as data:
        assert data["losses"].shape == (25, 64) and data["steps"][-1] == 120
    assert main(["analyze", str(out), "--window", "8", "--no-plot", "--out-dir", str(tmp_path / "a")]) == 0
