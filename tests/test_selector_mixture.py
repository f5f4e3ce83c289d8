"""Mixtures of strategies: budgets, deduplication, nesting, the component forms, errors."""
from __future__ import annotations

from collections import Counter
from typing import ClassVar

import numpy as np
import pytest

from probekit.errors import ProbekitUsageError
from probekit.registry import SELECTORS
from probekit.selectors.base import Ranking, Selector
from probekit.selectors.mixture import Component, MixtureSelector, parse_components
from probekit.selectors.random_sampling import RandomSelector


class FirstRows(Selector):
    """Deterministic test strategy: the canonical pool in order (so two copies collide completely)."""

    name: ClassVar[str] = "first-rows"
    stochastic: ClassVar[bool] = False

    def __init__(self) -> None:
        pass

    def _rank(self, pool, n, seed):
        return Ranking(indices=np.arange(n))


class Nested(MixtureSelector):
    name: ClassVar[str] = "mixture-alias"


@pytest.fixture
def registered():
    SELECTORS.register("first-rows", FirstRows)
    SELECTORS.register("mixture-alias", Nested)
    try:
        yield
    finally:
        SELECTORS.unregister("first-rows")
        SELECTORS.unregister("mixture-alias")


def component_of(label: str) -> str:
    return label.split("/", 1)[0]


def test_shares_hold_at_every_prefix_within_one(pool):
    weights = {"random#0": 5.0, "response": 3.0, "random#2": 1.0, "random#3": 1.0}
    selector = MixtureSelector(components=[("random", 5), ("response", 3, {"n_clusters": 8}), ("random", 1),
                                           ("random", 1, {"stratify": "topic"})])
    ps = selector.select(pool, len(pool), seed=3)
    labels = [component_of(s) for s in ps.slices]
    total = sum(weights.values())
    counts = Counter()
    for k, label in enumerate(labels, start=1):
        counts[label] += 1
        for name, w in weights.items():
            assert abs(counts[name] - w / total * k) < 1.0, (k, name)
    assert ps.provenance.info["counts"] == dict(Counter(labels))
    response = ps.provenance.info["components"][1]
    assert response["label"] == "response" and response["info"]["n_clusters"] == 8  # the component's own info


def test_identical_components_are_deduplicated(pool, registered):
    selector = MixtureSelector(components="first-rows:1,first-rows:1")
    ps = selector.select(pool, 30)
    expected = sorted(pool.ids.tolist())[:30]  # both rank the canonical pool in order
    assert list(ps.ids) == expected
    assert Counter(ps.slices) == {"first-rows#0": 15, "first-rows#1": 15}
    info = {c["label"]: c for c in ps.provenance.info["components"]}
    # Each took every other row; the second always found its first choice taken.
    assert info["first-rows#0"]["skipped_duplicates"] == 14
    assert info["first-rows#1"]["skipped_duplicates"] == 15


def test_two_random_components_fill_the_whole_pool(pool):
    ps = MixtureSelector(components="random:0.5,random:0.5").select(pool, len(pool), seed=1)
    assert sorted(ps.ids) == sorted(pool.ids.tolist())


def test_nested_with_duplicates_and_three_components(pool):
    selector = MixtureSelector(components=[("random", 2), ("response", 1), ("random", 1, {"stratify": "label"})])
    full = list(selector.select(pool, 60, seed=9).ids)
    for m in (1, 7, 33, 59):
        assert list(selector.select(pool, m, seed=9).ids) == full[:m]


def test_component_seeds_come_from_a_seed_sequence(pool):
    ps = MixtureSelector(components=[("random", 1.0, {})]).select(pool, 12, seed=5)
    seed = int(np.random.SeedSequence([5, 0]).generate_state(1)[0])
    expected = RandomSelector().select(pool, 12, seed=seed)
    assert list(ps.ids) == list(expected.ids)
    assert ps.provenance.info["components"][0]["seed"] == seed


def test_component_slices_are_prefixed(pool):
    ps = MixtureSelector(components=[("random", 1, {"stratify": "topic"}), ("response", 1, {"n_clusters": 4})]
                         ).select(pool, 12)
    topics = pool.column("topic")
    for label, i in zip(ps.slices, ps.indices):
        name, _, own = label.partition("/")
        if name == "random":
            assert own == topics[i]
        else:
            assert name == "response" and own.startswith("cluster-")


def test_stochastic_if_any_component_is(registered):
    assert MixtureSelector(components="first-rows").stochastic is False
    assert MixtureSelector(components="first-rows,random").stochastic is True
    assert MixtureSelector(components="nonsense:-1").stochastic is True  # select() will refuse it


def test_deterministic_components_ignore_the_seed(pool, registered):
    selector = MixtureSelector(components="first-rows:2,first-rows:1")
    assert selector.select(pool, 9, seed=0).ids == selector.select(pool, 9, seed=4).ids


def test_compact_and_json_strings_parse(pool):
    assert parse_components("cluster:0.75, concern:0.25") == [
        Component("cluster", 0.75, {}), Component("concern", 0.25, {})]
    assert parse_components("random,response:3") == [Component("random", 1.0, {}), Component("response", 3.0, {})]
    text = '[{"strategy":"concern","weight":0.25,"params":{"slices":["rare:topic"]}},{"strategy":"cluster"}]'
    assert parse_components(text) == [
        Component("concern", 0.25, {"slices": ["rare:topic"]}), Component("cluster", 1.0, {})]
    assert parse_components([("random", 2)]) == [Component("random", 2.0, {})]
    # The string forms select exactly what the list form does.
    as_list = MixtureSelector(components=[{"strategy": "random", "weight": 3},
                                          {"strategy": "response", "params": {"n_clusters": 5}}])
    as_json = MixtureSelector(components='[{"strategy": "random", "weight": 3}, '
                                         '{"strategy": "response", "params": {"n_clusters": 5}}]')
    assert as_list.select(pool, 15, seed=2).ids == as_json.select(pool, 15, seed=2).ids
    as_compact = MixtureSelector(components="random:3,response")
    as_tuples = MixtureSelector(components=(("random", 0.75), ("response", 0.25)))  # normalised weights
    assert as_compact.select(pool, 15, seed=2).ids == as_tuples.select(pool, 15, seed=2).ids


# -- errors -----------------------------------------------------------------------
WHERE = r"The 'components' parameter of MixtureSelector"


@pytest.mark.parametrize("components, message", [
    (5, WHERE + r" must be an instance of list or an instance of tuple or an instance of str\. Got 5 instead\."),
    ([], WHERE + r" must be .*, with at least one\. Got \[\] instead\."),
    ("", WHERE + r" must be .*\. Got '' instead \(item 0: ''\)\."),
    ("random:", WHERE + r" must be .*\. Got 'random:' instead \(item 0: 'random:'\)\."),
    ("random:x", WHERE + r": component 0 \(random\) has weight 'x'; weights must be positive numbers\."),
    ("random:0", WHERE + r": component 0 has weight 0.0; weights must be positive numbers\."),
    ("random:1,random:-2", WHERE + r": component 1 has weight -2.0; weights must be positive numbers\."),
    ("random:nan", WHERE + r": component 0 has weight nan; weights must be positive numbers\."),
    ([("random", True)], WHERE + r": component 0 has weight True; weights must be positive numbers\."),
    ([("random",)], WHERE + r" must be .*\. Component 0 is \('random',\)\."),
    (["random"], WHERE + r" must be .*\. Component 0 is 'random'\."),
    ([(3, 1.0)], WHERE + r": component 0 names strategy 3; names are strings\."),
    ([{"weight": 1}], WHERE + r": component 0 has no 'strategy'; use keys 'strategy', 'weight', 'params'\."),
    ([{"strategy": "random", "wieght": 1}], WHERE + r": component 0 has unknown key 'wieght'"),
    ([("random", 1, ["mode"])], WHERE + r": component 0 \(random\) has params \['mode'\]; params are a dict"),
    ("[{]", WHERE + r" is not valid JSON: "),
    ('[1, 2]', WHERE + r" must be .*\. Component 0 is 1\."),
    ("mixture:1", WHERE + r": component 0 is 'mixture'; mixtures do not nest, list its components instead\."),
])
def test_malformed_components(pool, components, message):
    with pytest.raises(ProbekitUsageError, match=message):
        MixtureSelector(components=components).select(pool, 3)


def test_unclosed_json(pool):
    with pytest.raises(ProbekitUsageError, match=WHERE + r" is not valid JSON: Expecting ',' delimiter"):
        MixtureSelector(components='[{"strategy": "random"}').select(pool, 3)


def test_a_mixture_under_another_name_is_refused(pool, registered):
    with pytest.raises(ProbekitUsageError, match=WHERE + r": component 1 \(mixture-alias\) is a mixture; mixtures do not nest"):
        MixtureSelector(components="random,mixture-alias").select(pool, 3)


def test_unknown_strategy_gets_the_registry_suggestion(pool):
    with pytest.raises(ProbekitUsageError,
                       match=r"^mixture component 1 \(respnse\): Unknown selector 'respnse'\. Did you mean: response\? "
                             r"Available: .*mixture, random, response"):
        MixtureSelector(components="random:1,respnse:1").select(pool, 3)


def test_component_params_are_validated_by_their_selector(pool):
    with pytest.raises(ProbekitUsageError,
                       match=r"^mixture component 0 \(random\): Invalid parameter 'mod' for selector 'random' "
                             r"\(RandomSelector\)\. Valid parameters: stratify, mode\.$"):
        MixtureSelector(components=[("random", 1, {"mod": "x"})]).select(pool, 3)
    with pytest.raises(ProbekitUsageError,
                       match=r"^mixture component 0 \(random\): The 'mode' parameter of RandomSelector must be one of"):
        MixtureSelector(components=[("random", 1, {"mode": "x"})]).select(pool, 3)
    with pytest.raises(ProbekitUsageError,
                       match=r"^mixture component 1 \(response\): The 'trajectory_field' parameter of ResponseSelector "
                             r"names column 'nope'"):
        MixtureSelector(components=[("random", 1), ("response", 1, {"trajectory_field": "nope"})]).select(pool, 3)


def test_trajectory_field_reaches_the_response_part_and_only_it():
    """A mixture with a response part reads its pilot losses from the column the mixture names."""
    from probekit.pool import Pool
    from probekit.selectors.mixture import component_seed
    from probekit.selectors.response import ResponseSelector

    rng = np.random.default_rng(0)
    losses = rng.gamma(2.0, size=(60, 8)).tolist()
    pool = Pool.from_dict({"id": [f"r{i}" for i in range(60)], "mine": losses}, id_field="id")
    ps = MixtureSelector(components="response:0.5,random:0.5", trajectory_field="mine").select(pool, 10, seed=0)
    assert [c["inherited"] for c in ps.provenance.info["components"]] == [["trajectory_field"], []]
    expected = ResponseSelector(trajectory_field="mine").select(pool, 10, seed=component_seed(0, 0)).ids
    from_response = [i for i, s in zip(ps.ids, ps.slices) if s.startswith("response")]
    assert len(from_response) == 5 and from_response == [i for i in expected if i in from_response]
    assert from_response[0] == expected[0]  # the response part ranks first, so its first pick is its own
    with pytest.raises(ProbekitUsageError, match=r"^The 'trajectory_field' parameter of MixtureSelector "
                                                 r"\(--param trajectory_field=COLUMN on the command line\) must "
                                                 r"reach a component, but none of its components \(random\)"):
        MixtureSelector(components="random", trajectory_field="mine").select(pool, 10, seed=0)
