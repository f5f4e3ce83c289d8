"""Bad input through every command: one table of cases.

Each case is a command line, the exit code it must end with (2: usage, 1: runtime), and a
pattern its one-line message must match. Every case also checks that the command printed
nothing to stdout and exactly one line to stderr, left no file or folder behind (temporaries included)
and changed none of its inputs: the workspace is byte-identical before and after.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from probekit.cli import main
from workspace import snapshot


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A user's folder: a text pool, a parquet pool, a probe set, loss matrices, and some broken files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("workspace")
    rows = [{"uid": f"u{i:03d}", "prompt": f"a {t} sentence {i}", "topic": t, "label": i % 2}
            for i, t in enumerate(("rare" if i % 20 == 0 else "common") for i in range(120))]
    (root / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    changed = [dict(r, prompt=r["prompt"] + "!") if r["uid"] == "u007" else r for r in rows]
    (root / "changed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in changed))
    pq.write_table(pa.table({"x": np.arange(60.0), "y": np.arange(60.0) % 7}), root / "pool.parquet")
    assert main(["select", "--strategy", "random", "--n", "10", "--data", str(root / "pool.jsonl"),
                 "--id-field", "uid", "--out", str(root / "probes.parquet")]) == 0
    rng = np.random.default_rng(0)
    np.save(root / "losses.npy", rng.normal(size=(40, 6)))
    np.save(root / "few.npy", rng.normal(size=(10, 6)))
    np.save(root / "nan.npy", np.full((40, 6), np.nan))
    (root / "notes").mkdir()
    (root / "notes" / "mine.txt").write_text("the user's own file")
    (root / "bench").mkdir()
    (root / "bench" / "results.json").write_text(json.dumps({"grid_key": "another grid", "cells": []}))
    (root / "bench" / "report.md").write_text("# another benchmark\n")
    (root / "a_file").write_text("not a directory")
    (root / "ckpt").mkdir()  # "checkpoints" of a run that are not state dicts, and a model factory
    for step in (100, 200):
        (root / "ckpt" / f"step-{step}.pt").write_text("not a state dict")
    (root / "factory.py").write_text("import torch\n\ndef build():\n    return torch.nn.Linear(1, 2)\n")
    return root


CASES = [
    # -- select --------------------------------------------------------------------------
    (["select", "--strategy", "random", "--n", "0"], 2,
     r"The 'n' parameter of RandomSelector\.select must be an int in the range \[1, 1797\]\. Got 0 instead\."),
    (["select", "--strategy", "clustr"], 2, r"Unknown selector 'clustr'\. Did you mean: cluster\?"),
    (["select", "--strategy", "random", "--n", "4", "--seed", "-1"], 2, r"'seed' parameter .* Got -1 instead"),
    (["select", "--strategy", "random", "--n", "4", "--data", "{ws}/missing.jsonl"], 2, r"missing\.jsonl"),
    (["select", "--strategy", "random", "--n", "4", "--data", "{ws}/pool.jsonl", "--id-field", "nope"], 2,
     r"'nope'"),
    (["select", "--strategy", "random", "--n", "4", "--out", "p.txt"], 2, r"--out must name a \.parquet file"),
    (["select", "--strategy", "random", "--n", "4", "--data", "{ws}/pool.parquet", "--out", "{ws}/pool.parquet"],
     2, r"would write over this command's input \(--data"),
    (["select", "--strategy", "random", "--n", "4", "--out", "{ws}/probes.parquet"], 2,
     r"already exists; pass --overwrite to replace it"),
    (["select", "--strategy", "random", "--n", "4", "--param", "stratify"], 2, r"--param takes KEY=VALUE"),
    (["select", "--strategy", "random", "--n", "4", "--param", "stratify=nope"], 2, r"nope"),
    (["select", "--strategy", "random", "--n", "4", "--slice", "rare:topic"], 2,
     r"--slice does not apply to strategy 'random'"),
    (["select", "--strategy", "cluster", "--n", "4", "--data", "{ws}/pool.jsonl", "--text-field", "nope"], 2,
     r"'text_field' parameter of ClusterSelector names column 'nope', which the pool does not have"),
    (["select", "--strategy", "random", "--n", "x"], 2, r"argument --n: invalid int value: 'x'"),
    # -- inspect -------------------------------------------------------------------------
    (["inspect", "{ws}/missing.parquet"], 2, r"missing\.parquet"),
    (["inspect", "{ws}/pool.parquet"], 1, r"pool\.parquet"),
    (["inspect", "{ws}/probes.parquet", "--text-field", "nope"], 2, r"column 'nope' is not in the pool"),
    (["inspect", "{ws}/probes.parquet", "--data", "{ws}/changed.jsonl"], 1,
     r"probe set was made from pool \w+ \(ids: column 'uid'\) but pool .* --ignore-fingerprint"),
    # -- export --------------------------------------------------------------------------
    (["export", "{ws}/probes.parquet", "--format", "xml"], 2, r"--format must be one of jsonl, csv, datasets"),
    (["export", "{ws}/probes.parquet", "--format", "lm-eval"], 2, r"--format lm-eval needs --task"),
    (["export", "{ws}/probes.parquet", "--format", "jsonl", "--task", "t"], 2,
     r"--task applies to --format lm-eval only; got --format jsonl"),
    (["select", "--stratgy", "cluster"], 2,
     r"^probekit select: error: unrecognized arguments: --stratgy cluster \(see 'probekit select --help'\)$"),
    (["export", "{ws}/probes.parquet", "--format", "jsonl", "--out", "{ws}/pool.jsonl"], 2,
     r"would write over this command's input \(the probe set's pool"),
    (["export", "{ws}/probes.parquet", "--format", "csv", "--out", "{ws}/probes.parquet", "--overwrite"], 2,
     r"would write over this command's input \(PROBES"),
    (["export", "{ws}/probes.parquet", "--format", "csv", "--out", "{ws}/losses.npy"], 2,
     r"already exists; pass --overwrite"),
    (["export", "{ws}/probes.parquet", "--format", "datasets", "--out", "{ws}/notes", "--overwrite"], 2,
     r"is a directory with files in it that are not a probe-set datasets export"),
    (["export", "{ws}/probes.parquet", "--format", "datasets", "--out", "{ws}", "--overwrite"], 2,
     r"would write over this command's input|working directory"),
    (["export", "{ws}/probes.parquet", "--format", "npy", "--out", "{ws}/notes"], 2, r"is a directory; it must name a file"),
    (["export", "{ws}/probes.parquet", "--format", "jsonl", "--data", "{ws}/changed.jsonl", "--out", "x.jsonl"],
     1, r"probe set was made from pool"),
    # -- analyze -------------------------------------------------------------------------
    (["analyze", "{ws}/losses.npy", "--window", "1"], 2, r"argument --window: must be an int >= 2\. Got 1"),
    (["analyze", "{ws}/losses.npy", "--window", "41"], 2, r"needs at least window=41 usable records"),
    (["analyze", "{ws}/few.npy"], 2, r"needs at least window=32 usable records to compute one window; got 10 of 10 rows"),
    (["analyze", "{ws}/nan.npy", "--window", "8"], 2, r"got 0 of 40 rows, 40 rejected for NaN/inf"),
    (["analyze", "{ws}/losses.npy", "--top-k", "-1"], 2, r"argument --top-k: must be an int >= 1\. Got -1"),
    (["analyze", "--demo-seed", "-1"], 2, r"argument --demo-seed: must be an int >= 0\. Got -1"),
    (["analyze", "{ws}/losses.npy", "--signal", "nope"], 2, r"'signal' parameter of analyze must be one of"),
    (["analyze", "{ws}/losses.npy", "--out-dir", "{ws}/a_file"], 2, r"--out-dir .*a_file exists and is not a directory"),
    (["analyze", "{ws}/missing.npy"], 2, r"loss file .*missing\.npy' does not exist"),
    (["analyze", "{ws}/pool.jsonl"], 2, r"unsupported extension '\.jsonl'"),
    (["analyze", "{ws}/notes"], 2, r"loss file .*notes' is a directory without manifest\.json"),
    (["analyze", "{ws}/losses.npy", "--probes", "{ws}/probes.parquet"], 2,
     r"--probes needs a trajectory directory as LOSSES"),
    (["analyze", "--slice-field", "topic"], 2, r"--slice-field needs a trajectory directory as LOSSES .*built-in demo"),
    (["export", "{ws}/probes.parquet", "--format", "csv", "--out", "{ws}/a_file/x.csv"], 2,
     r"a_file is a file, not a directory"),
    (["select", "--strategy", "random", "--n", "4", "--out", "{ws}/a_file/p.parquet"], 2,
     r"a_file is a file, not a directory"),
    # -- selectors, transitions, bench -----------------------------------------------------
    (["selectors", "concren"], 2, r"Unknown selector 'concren'\. Did you mean: concern\?"),
    (["transitions", "run", "grokkin"], 2, r"grokkin.*Did you mean: grokking"),
    (["transitions", "run", "grokking", "--seed", "-1"], 2, r"argument --seed: seeds must be ints >= 0\. Got -1"),
    (["transitions", "run", "grokking", "--config", "huge"], 2, r"huge"),
    (["bench", "--jobs", "0"], 2, r"argument --jobs: must be an int >= 1\. Got 0 instead"),
    (["bench", "--families", "grokkin"], 2, r"grokkin.*Did you mean: grokking"),
    (["bench", "--families", "grokking-null"], 2, r"'grokking-null' is a null control"),
    (["bench", "--out-dir", "{ws}/a_file"], 2, r"--out-dir .*a_file exists and is not a directory"),
    (["bench", "--out-dir", "{ws}/bench"], 2, r"already holds results\.json, report\.md of another benchmark"),
    # -- record ----------------------------------------------------------------------------
    (["record", "--checkpoints", "{ws}/runs/step-*", "--data", "{ws}/pool.jsonl", "--out", "t"], 2,
     r"no checkpoints found: the pattern '.*runs/step-\*' matches nothing \(looked in .*runs\)"),
    (["record", "--checkpoints", "{ws}/notes", "--data", "{ws}/pool.jsonl", "--out", "t"], 2,
     r"no checkpoints found in .*notes: looked for checkpoint-N subfolders and model directories \(with a "
     r"config\.json\) and state-dict files \(\*\.pt, \*\.pth, \*\.bin, \*\.safetensors\)"),
    (["record", "--checkpoints", "{ws}/ckpt", "--data", "{ws}/pool.jsonl", "--out", "t"], 2,
     r"state-dict files need --model-factory MODULE:FUNCTION"),
    (["record", "--checkpoints", "{ws}/ckpt", "--model-factory", "{ws}/missing.py:build", "--data",
      "{ws}/pool.jsonl", "--out", "t"], 2, r"--model-factory '.*missing\.py:build': file .*missing\.py does not exist"),
    (["record", "--checkpoints", "{ws}/ckpt", "--model-factory", "{ws}/factory.py:build", "--loss", "classification",
      "--data", "{ws}/pool.jsonl", "--input-field", "label", "--target-field", "label", "--out", "t"], 2,
     r"checkpoint step 100 \(.*step-100\.pt\) failed to load: UnpicklingError: not a tensor file torch.load can "
     r"read safely \(weights_only=True\); is it truncated or another format\?$"),
    (["record", "--checkpoints", "{ws}/ckpt", "--model-factory", "{ws}/factory.py:build", "--loss", "classification",
      "--data", "{ws}/pool.jsonl", "--input-field", "nope", "--target-field", "label", "--out", "t"], 2,
     r"column 'nope' \(--input-field\) is not in pool .*pool\.jsonl; its columns: uid, prompt, topic, label, probe_id\.$"),
    (["record", "--checkpoints", "{ws}/ckpt", "--model-factory", "{ws}/factory.py:build", "--loss", "classification",
      "--data", "{ws}/pool.jsonl", "--input-field", "label", "--target-field", "label", "--out", "{ws}/notes"], 2,
     r"notes is a directory with files in it that are not a probekit user trajectory"),
    (["record", "--checkpoints", "{ws}/ckpt", "--model-factory", "{ws}/factory.py:build", "--data", "{ws}/pool.jsonl",
      "--out", "{ws}"], 2, r"would write over this command's input \(--data"),
    (["record", "--checkpoints", "{ws}/ckpt", "--data", "{ws}/pool.jsonl", "--out", "t", "--batch-size", "0"], 2,
     r"argument --batch-size: must be an int >= 1\. Got 0 instead\."),
    (["record", "--checkpoints", "{ws}/ckpt", "--data", "{ws}/pool.jsonl", "--out", "t", "--onset", "1",
      "--order-csv", "{ws}/a_file"], 2, r"give one of --onset, --order-csv and --order-parameter"),
]


@pytest.mark.parametrize("argv,code,pattern", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input(workspace, tmp_path, monkeypatch, capsys, argv, code, pattern):
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("PROBEKIT_CACHE_DIR", str(tmp_path / "cache"))  # outside the workspace
    before = snapshot(workspace)
    filled = [a.format(ws=workspace) for a in argv]
    try:
        got = main(filled)
    except SystemExit as exc:  # argparse's own errors
        got = exc.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert got == code, (got, err)
    assert out == ""
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"probekit {argv[0]}"), lines[0]
    assert re.search(pattern, lines[0]), lines[0]
    assert snapshot(workspace) == before  # inputs unchanged, nothing left behind
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npy"))
