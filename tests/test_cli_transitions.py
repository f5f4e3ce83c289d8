"""``probekit transitions list | run``."""
from __future__ import annotations

import re

import pytest

from probekit.cli import main
from probekit.registry import BUILTIN_TRANSITIONS


def test_list_shows_every_reference_run(capsys):
    assert main(["transitions", "list"]) == 0
    out = capsys.readouterr().out
    for name in BUILTIN_TRANSITIONS:
        assert f"\n{name} " in out
    assert "cannot be loaded" not in out


def test_run_records_then_reuses_and_prints_transitions(tmp_path, capsys):
    args = ["transitions", "run", "deep-linear", "deep-linear-null", "--config", "small", "--seed", "0", "1",
            "--cache-dir", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("recorded in") == 4 and "cached" not in out
    assert "deep-linear seed 1 (small): 301 records x 64 pool examples" in out
    assert "mode_1: onset 350, midpoint 395 (from 0 to 1)" in out  # seed 0, as in the store tests
    assert "mode_3: no transition" in out
    trajectory_lines = [line.split(": ", 1)[1] for line in out.splitlines() if "trajectory:" in line]
    assert len(trajectory_lines) == 4 and all(line.startswith(str(tmp_path)) for line in trajectory_lines)
    assert main(args) == 0
    assert capsys.readouterr().out.count("cached, loaded in") == 4


def _exit_code(argv: list[str]) -> int:
    """main()'s return code, or argparse's exit code when it stops first."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(
    "argv, message",
    [
        (["transitions", "run", "grokin"], r"Unknown reference run 'grokin'\. Did you mean: grokking"),
        (["transitions", "run", "deep-linear", "--config", "huge"], r"Unknown config 'huge' for reference run 'deep-linear'"),
        (["transitions", "run", "deep-linear", "--seed", "-3"], r"seeds must be ints >= 0\. Got -3 instead\."),
        (["transitions", "run", "deep-linear", "--seed", "x"], r"argument --seed: invalid int value: 'x'"),
        (["transitions", "run"], r"the following arguments are required: NAME"),
        (["transitions"], r"the following arguments are required: ACTION"),
    ],
)
def test_usage_errors_are_one_line_exit_2(argv, message, capsys, tmp_path):
    code = _exit_code([*argv, "--cache-dir", str(tmp_path)] if argv[1:] else argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert re.search(message, err)
    assert not any(tmp_path.rglob("*.npy"))  # nothing trained, nothing written
