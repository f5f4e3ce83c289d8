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


@pytest.fixture(scope="session")
def pool():
    """The conformance pool (``probekit.testing.make_test_pool``: 200 rows with every column the
    built-in selectors and embedders use), shared by every test module; pools are immutable, and
    the selector checks assert that no strategy mutates it. A module that needs other rows defines
    its own ``pool``."""
    from probekit.testing import make_test_pool

    return make_test_pool()


@pytest.fixture(scope="session")
def trajectory_cache(tmp_path_factory):
    """One trajectory store for the whole session: a reference run recorded by one test module
    (the ``small`` presets) is reused by the next. Tests of the store itself, which need it empty,
    use their own directory."""
    return tmp_path_factory.mktemp("trajectories")


@pytest.fixture()
def text_pool(tmp_path):
    """A user's own text pool: 120 jsonl rows with an id column, a prompt, a topic (one rare) and a label."""
    import json

    topics = ["sports", "cooking", "music"]
    rows = []
    for i in range(120):
        topic = "rare" if i % 20 == 0 else topics[i % 3]
        rows.append({"uid": f"u{i:03d}", "prompt": f"a {topic} sentence {i} about {'xyz'[i % 3]} {topic}",
                     "topic": topic, "label": i % 2})
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def selected(tmp_path, text_pool, monkeypatch, capsys):
    """A probe set selected from the user's text pool with its id column, in the working directory."""
    from probekit.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["select", "--strategy", "random", "--n", "12", "--data", str(text_pool),
                 "--id-field", "uid", "--out", "probes.parquet"]) == 0
    capsys.readouterr()
    return tmp_path / "probes.parquet"
