"""Shared fixtures."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tiny torch models on one thread, restored afterwards.

    Tiny matrices gain nothing from intra-op threads; on 2 busy cores the
    spinning OpenMP workers make each forward pass ~10-20x slower.
    """
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
