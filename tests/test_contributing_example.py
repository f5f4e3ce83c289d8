"""The selector written out in CONTRIBUTING.md passes the conformance suite as written."""
from __future__ import annotations

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
