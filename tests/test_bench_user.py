"""``probekit bench --trajectory``: the user's own recorded runs scored with the reference grid.

A tiny classifier whose weights move from a random start to a trained solution along a sigmoid
in time (the transition) is recorded with ``probekit.record.record_run`` from models in memory,
beside a null run that wanders around its start. The bench must score it as a family of its own,
with selection seeds, its concerns and pilot, the scalar baselines a recording allows, and say
in its report what the rates rest on.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from probekit.cli import main
from probekit.errors import ProbekitUsageError

N_RECORDS, ONSET, MIDPOINT = 120, 800, 900


def _rows(n: int = 96) -> list[dict]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    return [{"id": f"r{i:03d}", "x": [float(v) for v in row], "y": int(row[0] + row[1] > 0),
             "group": "rare" if i % 12 == 0 else "common"} for i, row in enumerate(x)]


def _models(transition: bool):
    """(step, model) pairs: weights from a random start to a trained solution (or around the start)."""
    import torch

    torch.manual_seed(0)
    build = lambda: torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))  # noqa: E731
    start, trained = build(), build()
    rows = _rows()
    x = torch.tensor([r["x"] for r in rows])
    y = torch.tensor([r["y"] for r in rows])
    opt = torch.optim.Adam(trained.parameters(), lr=0.05)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(trained(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    a, b = start.state_dict(), trained.state_dict()
    gen = torch.Generator().manual_seed(1 if transition else 2)
    for r in range(N_RECORDS):
        step = 10 * r
        w = float(1 / (1 + np.exp(-(step - 860) / 40))) if transition else 0.0
        model = build()
        model.load_state_dict({k: (1 - w) * a[k] + w * b[k] + 0.01 * torch.randn(a[k].shape, generator=gen)
                               for k in a})
        yield step, model


@pytest.fixture(scope="module")
def user_runs(tmp_path_factory):
    from probekit.pool import Pool
    from probekit.record import record_run

    root = tmp_path_factory.mktemp("user-runs")
    pool = Pool.from_dict({k: [r[k] for r in _rows()] for k in ("id", "x", "y", "group")}, id_field="id")
    common = dict(loss="classification", input_field="x", target_field="y", progress=False)
    record_run(_models(True), pool, root / "my-run", onset=ONSET, midpoint=MIDPOINT, **common)
    record_run(_models(False), pool, root / "my-baseline", **common)
    return root


def test_a_user_trajectory_is_a_family_with_selection_seeds_concerns_and_pilot(user_runs, tmp_path, capsys,
                                                                              one_torch_thread):
    out = tmp_path / "out"
    code = main(["bench", "--trajectory", str(user_runs / "my-run"), "--null", str(user_runs / "my-baseline"),
                 "--designs", "random", "cluster", "concern", "response", "--concern", "rare=group=rare",
                 "--sizes", "4", "8", "--seeds", "4", "--jobs", "1", "--out-dir", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads((out / "results.json").read_text())
    families = {c["family"] for c in data["cells"]}
    assert families == {"my-run"}  # only the user's run: no reference family was asked for
    designs = {c["design"] for c in data["cells"]}
    assert {"random", "cluster", "concern[rare]", "response", "scalar"} <= designs
    assert not any(c["signal"]["statistic"] == "grad_norm" for c in data["cells"])  # a recording has no gradients
    assert all(c["error"] is None for c in data["cells"]), [c["error"] for c in data["cells"] if c["error"]]
    random_cell = next(c for c in data["cells"] if c["design"] == "random")
    episodes = random_cell["points"][0]["episodes"]
    assert sorted({e["seed"] for e in episodes}) == [0, 1, 2, 3]  # one run, four selection seeds
    # the concern's probes are the rare group's (8 rows of 96): its rankings hold them first
    rankings = {(r["family"], r["design"]): r for r in data["rankings"]}
    rare = {r["id"] for r in _rows() if r["group"] == "rare"}
    first = rankings[("my-run", "concern[rare]")]["runs"]["my-run/0"][:len(rare)]
    assert set(first) == rare
    report = (out / "report.md").read_text()
    assert "my-run" in report and "one run, 4 selection seeds" in report and "1 null run: the quiet units are 2 spans" in report
    assert data["grid"]["trajectories"][0]["path"].endswith("my-run")
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "convergence-my-run.png", "lead-vs-far-my-run.png", "signals-my-run.png"]
    # resumable: the same command again computes nothing
    capsys.readouterr()
    assert main(["bench", "--trajectory", str(user_runs / "my-run"), "--null", str(user_runs / "my-baseline"),
                 "--designs", "random", "cluster", "concern", "response", "--concern", "rare=group=rare",
                 "--sizes", "4", "8", "--seeds", "4", "--jobs", "1", "--out-dir", str(out)]) == 0
    assert "0 cells computed" in capsys.readouterr().out


def test_the_default_pilot_is_a_tenth_of_the_records_before_the_onset(user_runs):
    from probekit.eval.bench.grid import BenchGrid
    from probekit.eval.bench.user_runs import UserTrajectory

    grid = BenchGrid(designs=("random", "response"), trajectories=(UserTrajectory(str(user_runs / "my-run")),))
    grid = grid.with_families()
    assert grid.families == ("my-run",)
    assert grid.design("response", "my-run").pilot == 8  # 80 records before step 800
    own = BenchGrid(designs=("response",), trajectories=(UserTrajectory(str(user_runs / "my-run"), pilot=3),))
    assert own.design("response", "my-run").pilot == 3
    moved = BenchGrid(designs=("random",), trajectories=(UserTrajectory(str(user_runs / "my-run")),))
    assert moved.key() == grid.__class__(designs=("random",), trajectories=(
        UserTrajectory(str(user_runs / "my-run") + "/"),)).key()  # the key is the content's, not the path's


@pytest.mark.parametrize("argv, message", [
    (["--null", "x"], r"argument --null: applies to your own runs; give them with --trajectory DIR\.$"),
    (["--trajectory", "NULL_RUN"], r"--trajectory .*my-baseline: it records no transition to score against"),
    (["--trajectory", "NOWHERE"], r"is not a trajectory directory \(no manifest\.json\)"),
    (["--trajectory", "RUN", "--concern", "rare"], r"argument --concern: takes NAME=SLICE_SPEC"),
    (["--trajectory", "RUN", "--pilot", "0"], r"argument --pilot: must be an int >= 1"),
    (["--trajectory", "RUN", "--pilot", "79"], r"its first onset \(step 800\) comes after 80 records; a pilot span of "
                                               r"79 records \(--pilot\) leaves fewer than 2 to score before it"),
    (["--sizes", "0"], r"argument --sizes: sizes must be ints >= 1"),
])
def test_bad_user_run_arguments_are_one_line(user_runs, tmp_path, capsys, argv, message):
    import re

    paths = {"RUN": str(user_runs / "my-run"), "NULL_RUN": str(user_runs / "my-baseline"),
             "NOWHERE": str(tmp_path / "nowhere")}
    argv = [paths.get(a, a) for a in argv]
    assert main(["bench", *argv, "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "out" / "report.md").exists()


def test_a_null_run_needs_the_same_pool(user_runs, tmp_path):
    from probekit.pool import Pool
    from probekit.eval.bench.user_runs import UserTrajectory
    from probekit.record import record_run

    rows = _rows(48)
    pool = Pool.from_dict({k: [r[k] for r in rows] for k in ("id", "x", "y", "group")}, id_field="id")
    small = tmp_path / "small-null"

    def models():
        for step, model in _models(False):
            yield step, model

    record_run(models(), pool, small, loss="classification", input_field="x", target_field="y", progress=False)
    with pytest.raises(ProbekitUsageError, match=r"--null .*small-null: its pool has 48 examples, the pool of .* 96"):
        UserTrajectory(str(user_runs / "my-run"), (str(small),)).check()


def test_a_user_trajectory_has_no_reference_run(user_runs):
    from probekit.errors import ProbekitError
    from probekit.eval.store.trajectory import Trajectory

    with Trajectory(user_runs / "my-run") as traj:
        with pytest.raises(ProbekitError, match=r"is a user trajectory \(probekit record\): it has no reference run"):
            traj.reference_run()


def test_designs_a_recording_cannot_run_are_named_in_the_report_not_failed(user_runs, tmp_path, capsys,
                                                                           one_torch_thread):
    out = tmp_path / "out"
    code = main(["bench", "--trajectory", str(user_runs / "my-run"), "--designs", "random", "gradient", "concern",
                 "--sizes", "4", "--seeds", "2", "--jobs", "1", "--out-dir", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads((out / "results.json").read_text())
    assert {c["design"] for c in data["cells"]} == {"random", "scalar"}
    report = (out / "report.md").read_text()
    assert "not scored here: gradient: it was recorded from models in memory" in report
    assert "concern: no concern given (--concern NAME=SPEC)" in report
    assert "no null run: false alarms come from the quiet period alone" in report


def test_the_bench_writes_nothing_beside_a_user_trajectory(user_runs):
    assert sorted(p.name for p in user_runs.iterdir()) == ["my-baseline", "my-run"]


def test_a_concern_naming_a_missing_column_is_one_line_before_any_work(user_runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["bench", "--trajectory", str(user_runs / "my-run"), "--designs", "random", "concern",
                 "--concern", "rare=grup=rare", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--concern rare:" in err and "grup" in err, err
    assert not out.exists()


def test_gradient_design_on_a_causal_lm_recording(tmp_path, capsys, one_torch_thread):
    """A causal LM recorded from a Trainer output: the gradient design selects on the selection checkpoint's
    directory (``GradientSelector(checkpoint=...)``), with the recorded tokenizer."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from record_runs import lm_run

    from probekit.cli.common import load_pool
    from probekit.selectors.gradient import GradientSelector

    run = lm_run(tmp_path / "lm", steps=tuple(range(0, 120, 4)))
    traj, out = tmp_path / "traj", tmp_path / "out"
    assert main(["record", "--checkpoints", str(run), "--data", str(tmp_path / "lm" / "pool.jsonl"), "--id-field",
                 "uid", "--text-field", "text", "--onset", "80", "--midpoint", "96", "--out", str(traj)]) == 0
    assert main(["bench", "--trajectory", str(traj), "--designs", "random", "gradient", "--sizes", "4",
                 "--seeds", "2", "--jobs", "1", "--out-dir", str(out)]) == 0, capsys.readouterr().err
    data = json.loads((out / "results.json").read_text())
    cells = [c for c in data["cells"] if c["design"] == "gradient"]
    assert cells and all(c["error"] is None for c in cells)
    assert "not scored here" not in (out / "report.md").read_text()
    ranking = next(r for r in data["rankings"] if r["design"] == "gradient")["runs"]["traj/1"]
    pool = load_pool(str(tmp_path / "lm" / "pool.jsonl"), "uid")
    expected = GradientSelector(checkpoint=str(run / "checkpoint-0"), text_field="text").select(pool, 4, seed=1)
    assert ranking[:4] == list(expected.ids)
