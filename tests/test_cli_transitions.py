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


def test_a_third_party_reference_run_registers_and_runs(tmp_path, capsys):
    from probekit.eval.families.deep_linear import DeepLinear
    from probekit.registry import TRANSITIONS

    class TwoModes(DeepLinear):
        """A user's own reference run: the deep linear network with two teacher modes."""

        name = "two-modes"
        summary = "a user's deep linear network with teacher modes 4 and 2"
        presets = {"small": {"width": 4, "teacher_strengths": (4.0, 2.0), "steps": 1200, "n_pool": 32}}

    TRANSITIONS.register("two-modes", TwoModes)
    try:
        assert main(["transitions", "list"]) == 0
        assert "two-modes" in capsys.readouterr().out
        assert main(["transitions", "run", "two-modes", "--config", "small", "--cache-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "two-modes seed 0 (small): 241 records x 32 pool examples, recorded in" in out
        assert out.count("onset") == 2 and "no transition" not in out
        assert (tmp_path / "two-modes").is_dir()
    finally:
        TRANSITIONS.unregister("two-modes")
