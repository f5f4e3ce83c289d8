"""The selector registry: entry points, built-in table, errors."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from probekit.errors import ProbekitError, ProbekitUsageError
from probekit.registry import BUILTIN_SELECTORS, SELECTORS, Registry, make_selector
from probekit.selectors.random_sampling import RandomSelector

ROOT = Path(__file__).resolve().parents[1]


def test_builtin_table_equals_pyproject_entry_points():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["probekit.selectors"] == BUILTIN_SELECTORS


def test_installed_entry_points_are_used():
    from importlib import metadata

    names = {ep.name for ep in metadata.entry_points(group="probekit.selectors")}
    assert names >= set(BUILTIN_SELECTORS)
    assert SELECTORS.names() == sorted(BUILTIN_SELECTORS)
    assert SELECTORS.load("random") is RandomSelector


def test_unknown_name_suggests_and_lists():
    with pytest.raises(ProbekitUsageError,
                       match=r"^Unknown selector 'randm'\. Did you mean: random\? Available: cluster, concern, "
                             r"gradient, mixture, random, response\.$"):
        SELECTORS.load("randm")
    with pytest.raises(ProbekitUsageError, match=r"^Unknown selector 'zzz'\. Available: cluster"):
        make_selector("zzz")


def test_register_refuses_duplicates_and_loads_lazily():
    reg = Registry("probekit.test-group-that-does-not-exist", "widget", {"a": "json:dumps"})
    assert reg.names() == ["a"]  # the built-in table stands in: no installed probekit in this group
    import json

    assert reg.load("a") is json.dumps
    reg.register("b", RandomSelector)
    assert reg.load("b") is RandomSelector
    with pytest.raises(ProbekitUsageError, match=r"The widget 'a' is already registered"):
        reg.register("a", RandomSelector)
    reg.register("broken", "probekit.no_such_module:X")
    with pytest.raises(ProbekitError, match=r"the widget 'broken' could not be loaded from 'probekit.no_such_module:X'"):
        reg.load("broken")
    reg.unregister("b")
    assert "b" not in reg.names()


def test_make_selector_refuses_unknown_parameters():
    assert make_selector("random", stratify="label").stratify == "label"
    with pytest.raises(ProbekitUsageError,
                       match=r"Invalid parameter 'stratfy' for selector 'random' \(RandomSelector\)\. "
                             r"Valid parameters: stratify, mode\."):
        make_selector("random", stratfy="label")


def test_two_packages_claiming_one_name_are_refused(monkeypatch):
    from importlib import metadata

    class EP:
        def __init__(self, name, value, dist):
            self.name, self.value = name, value
            self.dist = type("D", (), {"name": dist})()

    fake = [EP("random", "probekit.selectors.random_sampling:RandomSelector", "probekit"),
            EP("random", "other.pkg:Random", "other-pkg")]
    monkeypatch.setattr(metadata, "entry_points", lambda group: fake)
    reg = Registry("probekit.selectors", "selector", {})
    with pytest.raises(ProbekitError, match=r"two packages register the selector 'random': probekit .* and other-pkg"):
        reg.names()
