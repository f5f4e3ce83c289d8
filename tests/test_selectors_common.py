"""Every registered selector passes the conformance suite (found through the registry).

This is the one place the common checks (``probekit.testing.CHECKS``) run on each strategy's
``example()``; a selector's own test file tests what is particular to it.
"""
from __future__ import annotations

import pytest

from probekit.registry import SELECTORS
from probekit.testing import CHECKS


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", SELECTORS.names())
def test_registered_selector_conforms(name, check, pool):
    selector = SELECTORS.load(name).example()
    check(selector, pool)
