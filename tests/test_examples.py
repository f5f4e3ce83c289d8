"""Every monitor example runs end to end in its tiny mode (what a newcomer runs, shrunk to seconds)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script, out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--tiny", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=300, env=env, cwd=out.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_grokking_monitor_example(tmp_path):
    out = tmp_path / "grok"
    stdout = _run("grokking_monitor.py", out)
    summary = json.loads((out / "summary.json").read_text())
    # steps 0..300 every 5 (61 records), more often after an alarm
    assert summary["records"] >= 61 and summary["counters"]["admitted"] == summary["records"]
    lines = (out / "monitor.jsonl").read_text().splitlines()
    assert len(lines) == summary["records"] and json.loads(lines[-1])["ready"]
    assert (out / "shc_pr_vs_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert f"{summary['records']} records" in stdout


def test_hf_trainer_example(tmp_path):
    pytest.importorskip("accelerate")
    out = tmp_path / "hf"
    stdout = _run("hf_trainer_monitor.py", out)
    assert "$ probekit select --strategy cluster --n 32" in stdout
    lines = [json.loads(s) for s in (out / "monitor.jsonl").read_text().splitlines()]
    assert [d["step"] for d in lines] == list(range(0, 25, 2)) and all(d["n_probes"] == 32 for d in lines)
    assert sorted(p.parent.name for p in (out / "trainer").glob("checkpoint-*/probekit_monitor.pt")) == [
        "checkpoint-12", "checkpoint-24"]


def test_export_example(tmp_path):
    out = tmp_path / "export"
    stdout = _run("export_probes.py", out)
    assert "read back: the same ids from both exports (lm-eval in pool order, datasets in rank order)" in stdout
    samples = json.loads((out / "samples.json").read_text())
    assert list(samples) == ["toy_prompts"] and len(samples["toy_prompts"]) == 16
