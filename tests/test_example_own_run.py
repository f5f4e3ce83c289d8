"""examples/own_run.py end to end in its tiny mode: train, record, bench, select, analyze (no download)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_own_run_example_goes_from_a_trainer_run_to_the_winning_design(tmp_path):
    pytest.importorskip("accelerate")  # the Trainer needs it
    out = tmp_path / "own-run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "own_run.py"), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    stdout = done.stdout

    # step 0: a Trainer run saved as checkpoint-N folders, and the held-out pool
    checkpoints = sorted(int(p.name.split("-")[1]) for p in (out / "run").glob("checkpoint-*"))
    assert checkpoints == list(range(0, 81)) and len(list((out / "null-run").glob("checkpoint-*"))) == 81
    pool = [json.loads(line) for line in (out / "pool.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in pool} == {"copy", "random"} and len(pool) == 200

    # step 1: the trajectory, with the transition read off the copy sequences' loss
    from probekit.eval.store.trajectory import Trajectory

    traj = Trajectory(out / "traj")
    assert traj.losses.shape == (81, 200) and list(traj.steps) == checkpoints
    (transition,) = traj.transitions
    assert transition.name == "loss:kind=copy"
    assert 0 < transition.onset_step <= transition.midpoint_step < 80
    assert "$ probekit record --checkpoints run --data pool.jsonl" in stdout
    null = Trajectory(out / "null-traj")  # the same job without copy sequences: no transition
    assert null.losses.shape == (81, 200) and not null.transitions

    # step 2: the bench scored the run as a family of its own, with every design and the scalars
    results = json.loads((out / "bench" / "results.json").read_text())
    assert {c["family"] for c in results["cells"]} == {"own-run"}
    assert {c["design"] for c in results["cells"]} == {"random", "cluster", "concern[copy]", "scalar"}
    assert all(c["error"] is None for c in results["cells"])
    report = (out / "bench" / "report.md").read_text()
    assert "own-run" in report and "one run, 3 selection seeds" in report and "1 null run" in report
    assert sorted(p.name for p in (out / "bench" / "figures").iterdir()) == [
        "convergence-own-run.png", "lead-vs-far-own-run.png", "signals-own-run.png"]

    # step 3: the winner's probe set is the bench's own draw, and analyze read the run through it
    assert "\nwinner: " in stdout
    assert "the same 16 probes as the bench's seed-0 draw of" in stdout and ": True" in stdout
    summary = json.loads((out / "analyze" / "summary.json").read_text())
    assert summary["probes"] == 16 and summary["records"] == 81
    assert summary["transitions"][0]["onset_step"] == transition.onset_step
    assert (out / "analyze" / "analyze.png").read_bytes()[:4] == b"\x89PNG"
    assert stdout.rstrip().splitlines()[-1].startswith("done in ")
