"""The selector written out in CONTRIBUTING.md passes the conformance suite as written."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from probekit.registry import SELECTORS
from probekit.testing import CHECKS, make_test_pool

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def every_kth():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    code = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "class EveryKth" in block)
    namespace: dict = {"__name__": "contributing_example"}
    exec(compile(code, "CONTRIBUTING.md", "exec"), namespace)
    cls = namespace["EveryKth"]
    SELECTORS.register(cls.name, cls)
    yield cls
    SELECTORS.unregister(cls.name)


@pytest.mark.parametrize("check", [c for c in CHECKS if c.__name__ != "check_picklable"],
                         ids=lambda c: c.__name__.removeprefix("check_"))
def test_documented_selector_conforms(every_kth, check):
    # (Pickling needs an importable module; a class exec'd from a document has none.)
    check(every_kth(), make_test_pool())


def test_documented_selector_is_benchmarked_by_name(every_kth, tmp_path, capsys, one_torch_thread):
    # Registered only through the registry (as its entry point would), benchmarked with no edit to probekit.
    from probekit.cli import main

    out = tmp_path / "bench"
    code = main(["bench", "--families", "deep-linear", "--designs", "random", "every-kth:k=5", "--jobs", "1",
                 "--out-dir", str(out), "--cache-dir", str(tmp_path / "cache")])
    report = capsys.readouterr().out
    assert code == 0
    assert "| every-kth(k=5) | 8 |" in report and "| every-kth(k=5) | 32 |" in report
    assert "designs random, every-kth(k=5);" in report
    rankings = json.loads((out / "results.json").read_text())["rankings"]
    by_design = {r["design"]: r["runs"] for r in rankings}
    assert set(by_design) == {"random", "every-kth(k=5)"}
    pool_ids = sorted(by_design["every-kth(k=5)"]["deep-linear/0"])  # every 5th of the canonical order
    assert len(pool_ids) == 32
