"""Every registered selector passes the conformance suite (found through the registry)."""
from __future__ import annotations

import pytest

from probekit.registry import SELECTORS
from probekit.testing import CHECKS, make_test_pool

POOL = None


def pool():
    global POOL
    if POOL is None:
        POOL = make_test_pool()
    return POOL


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", SELECTORS.names())
def test_registered_selector_conforms(name, check):
    selector = SELECTORS.load(name).example()
    check(selector, pool())
