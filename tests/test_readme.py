"""The README's two opening commands are the ones CI runs, and its figure exists."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def opening_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_two_commands_that_ci_runs():
    commands = opening_commands()
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands:
        steps = [s.strip() for s in command.split("&&")]
        assert steps[:3] == ["python3 -m venv .venv", ". .venv/bin/activate", "pip install torch==2.13.0"]
        for step in steps[3:]:
            if step.startswith("probekit "):
                assert f"&& {step})" in ci or f"\n{step}\n" in ci, step
            else:
                assert f"\n{step}\n" in ci, step
    assert commands[0].endswith("probekit bench --quick") and commands[1].endswith("python -m pytest")


def test_readme_figure_is_committed():
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (ROOT / target).is_file(), target
