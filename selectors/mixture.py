"""Mixtures of strategies with budgets (e.g. 75% cluster + 25% concern), deduplicated, nested.

``components`` lists the strategies and their weights, in one of three forms:

- a list of ``(name, weight)`` or ``(name, weight, params)`` tuples::

      MixtureSelector(components=[("cluster", 0.75), ("concern", 0.25, {"slices": ["rare:topic"]})])

- a list of dicts ``{"strategy": name, "weight": w, "params": {...}}``
  (``weight`` defaults to 1, ``params`` to ``{}``);
- a string, for the command line: compact ``name[:weight],...``, or the list
  of dicts as JSON when sub-parameters are needed::

      --param components=cluster:0.75,concern:0.25
      --param components='[{"strategy":"concern","weight":0.25,"params":{"slices":["rare:topic"]}},
                           {"strategy":"cluster","weight":0.75}]'

Weights must be positive; they are normalised to shares. Each component is
built through the registry (``make_selector``), so an unknown name gets the
registry's did-you-mean error and its parameters are validated by its own
selector. A mixture inside a mixture is refused (list its components instead).

How the probes are interleaved
    Each component ranks the pool for the full n (its own nested ranking).
    Probe k (k = 1, 2, ...) goes to the component chosen by Tijdeman's
    chairman-assignment rule on the shares (``probekit.selection.apportionment.chairman_next``: the earliest
    deadline among those lagging their share), which takes the next id of its
    own ranking not already taken. Every prefix holds each component's count
    within 1 - 1/(2m - 2) < 1 of share * k (m components; 1/2 for two), and
    duplicates do not change the counts, only which ids fill them. A
    component never runs dry: it skips at most the n - count ids the others
    took, so n of its own suffice. Every step depends only on prefixes of
    nested rankings, so the mixture is nested.

Seeds
    Component i (0-based) runs with seed
    ``int(numpy.random.SeedSequence([seed, i]).generate_state(1)[0])``:
    independent streams per component and per mixture seed (``seed + i``
    would make component 1 of seed 0 equal component 0 of seed 1).
    A mixture is stochastic when any of its components is.

Shared parameters
    ``text_field``, ``embedding_field`` and ``slices`` (the CLI's ``--text-field``,
    ``--embedding-field`` and ``--slice``), and ``trajectory_field`` (the pilot
    losses column ``response`` reads) go to every component whose own
    parameters include them, unless that component's ``params`` set them
    itself (``--text-field prompt`` reaches ``cluster`` and ``concern``, not
    ``random``). One that reaches no component is an error. The provenance
    records, per component, its parameters as run and which it took from the
    mixture (``inherited``).

Slices: the component's label (its strategy name, with ``#i`` appended when a
name appears twice), followed by ``/`` and the component's own slice label
when it has one (``concern/rare:topic``). Scores are not carried over (the
components' scales differ). The provenance info holds, per component, its
share, seed, count of probes, skipped duplicates and its own info.
"""
from __future__ import annotations

import json
import math
import numbers
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from probekit.errors import ProbekitError, ProbekitUsageError
from probekit.params import AnyOf
from probekit.selection.apportionment import chairman_next
from probekit.selectors.base import Ranking, Selector

if TYPE_CHECKING:
    from probekit.pool import Pool

_WHERE = "The 'components' parameter of MixtureSelector"
#: Parameters handed to the components that take them (the CLI's flags of the same meaning).
SHARED = {"text_field": "--text-field", "embedding_field": "--embedding-field", "slices": "--slice",
          "trajectory_field": "--param trajectory_field=COLUMN"}
_FORMS = "a list of (name, weight[, params]) or {'strategy', 'weight', 'params'} entries, or 'name:weight,...'"


class Component(NamedTuple):
    strategy: str
    weight: float
    params: dict


def component_seed(seed: int, index: int) -> int:
    """The seed component ``index`` of a mixture run with ``seed`` gets."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _weight(value: Any, i: int) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or value <= 0:
        raise ProbekitUsageError(f"{_WHERE}: component {i} has weight {value!r}; weights must be positive numbers.")
    return float(value)


def _entry(entry: Any, i: int) -> Component:
    if isinstance(entry, dict):
        unknown = sorted(set(entry) - {"strategy", "weight", "params"}, key=str)
        if unknown or "strategy" not in entry:
            problem = f"unknown key {unknown[0]!r}" if unknown else "no 'strategy'"
            raise ProbekitUsageError(
                f"{_WHERE}: component {i} has {problem}; use keys 'strategy', 'weight', 'params'."
            )
        name, weight, params = entry["strategy"], entry.get("weight", 1.0), entry.get("params", {})
    elif isinstance(entry, (list, tuple)) and len(entry) in (2, 3):
        name, weight, params = entry[0], entry[1], entry[2] if len(entry) == 3 else {}
    else:
        raise ProbekitUsageError(f"{_WHERE} must be {_FORMS}. Component {i} is {entry!r}.")
    if not isinstance(name, str):
        raise ProbekitUsageError(f"{_WHERE}: component {i} names strategy {name!r}; names are strings.")
    if params is None:
        params = {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise ProbekitUsageError(
            f"{_WHERE}: component {i} ({name}) has params {params!r}; params are a dict of parameter names."
        )
    return Component(name, _weight(weight, i), dict(params))


def _parse_string(text: str) -> list:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ProbekitUsageError(f"{_WHERE} is not valid JSON: {exc}.") from exc
        return value  # a list: the text starts with '['
    entries = []
    for i, item in enumerate(stripped.split(",")):
        name, sep, weight = (part.strip() for part in item.partition(":"))
        if not name or (sep and not weight):
            raise ProbekitUsageError(f"{_WHERE} must be {_FORMS}. Got {text!r} instead (item {i}: {item!r}).")
        try:
            value = float(weight) if sep else 1.0
        except ValueError:
            raise ProbekitUsageError(
                f"{_WHERE}: component {i} ({name}) has weight {weight!r}; weights must be positive numbers."
            ) from None
        entries.append((name, value))
    return entries


def parse_components(components: Any) -> list[Component]:
    """Normalise any accepted form of ``components`` to a list of Component (weights not yet normalised)."""
    entries = _parse_string(components) if isinstance(components, str) else components
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ProbekitUsageError(f"{_WHERE} must be {_FORMS}, with at least one. Got {components!r} instead.")
    parsed = [_entry(entry, i) for i, entry in enumerate(entries)]
    for i, c in enumerate(parsed):
        if c.strategy == "mixture":
            raise ProbekitUsageError(
                f"{_WHERE}: component {i} is 'mixture'; mixtures do not nest, list its components instead."
            )
    return parsed


def _labels(components: list[Component]) -> list[str]:
    names = [c.strategy for c in components]
    return [name if names.count(name) == 1 else f"{name}#{i}" for i, name in enumerate(names)]


def strategies_taking(name: str) -> str:
    """The registered strategies with a parameter ``name`` (for error messages)."""
    from probekit.registry import SELECTORS

    found = []
    for strategy in SELECTORS.names():
        try:
            cls = SELECTORS.load(strategy)
        except ProbekitError:  # a broken plugin must not hide the answer
            continue
        if name in cls._param_names() and not issubclass(cls, MixtureSelector):
            found.append(strategy)
    return ", ".join(found) or "none"


class MixtureSelector(Selector):
    """Strategies composed with budgets (e.g. 75% cluster + 25% concern), deduplicated and nested."""

    name: ClassVar[str] = "mixture"
    _constraints: ClassVar[dict[str, Any]] = {
        "components": AnyOf(list, tuple, str),
        "text_field": AnyOf(None, str),
        "embedding_field": AnyOf(None, str),
        "slices": AnyOf(None, str, dict, list, tuple),
        "trajectory_field": AnyOf(None, str),
    }

    def __init__(self, *, components: list | tuple | str = "cluster:0.75,random:0.25",
                 text_field: str | None = None, embedding_field: str | None = None, slices: Any = None,
                 trajectory_field: str | None = None) -> None:
        # Default: coverage of embedding space, plus a random quarter so that every prefix
        # keeps an unbiased sample (concern needs slices named, so it cannot be a default).
        self.components = components
        self.text_field = text_field  # text column to embed; to each component taking it that sets none
        self.embedding_field = embedding_field  # embeddings column; to each component taking it that sets none
        self.slices = slices  # slice specs; to each component taking slices (concern) that sets none
        self.trajectory_field = trajectory_field  # pilot losses column; to each component reading one (response)

    @property  # type: ignore[override]  # per instance: depends on the components
    def stochastic(self) -> bool:
        from probekit.registry import SELECTORS

        try:
            return any(bool(SELECTORS.load(c.strategy).stochastic) for c in parse_components(self.components))
        except ProbekitError:
            return True  # unparseable or unknown: select() will say why

    def _selectors(self) -> list[tuple[Component, Selector, list[str]]]:
        """Each component, its selector, and the names of the shared parameters it takes from the mixture."""
        from probekit.registry import SELECTORS, make_selector

        shared = {k: getattr(self, k) for k in SHARED if getattr(self, k) is not None}
        built, takers = [], {k: [] for k in shared}
        for i, c in enumerate(parse_components(self.components)):
            try:
                cls = SELECTORS.load(c.strategy)
                if issubclass(cls, MixtureSelector):
                    raise ProbekitUsageError(
                        f"{_WHERE}: component {i} ({c.strategy}) is a mixture; mixtures do not nest."
                    )
                accepted = set(cls._param_names())
                inherited = {k: v for k, v in shared.items() if k in accepted and k not in c.params}
                for k in shared.keys() & accepted:
                    takers[k].append(c.strategy)
                selector = make_selector(c.strategy, **c.params, **inherited)
                selector.validate_params()
            except ProbekitUsageError as exc:
                if str(exc).startswith(_WHERE):
                    raise
                raise ProbekitUsageError(f"mixture component {i} ({c.strategy}): {exc}") from exc
            built.append((c, selector, sorted(inherited)))
        for name, value in shared.items():
            if not any(name in taken for _, _, taken in built):
                names = ", ".join(c.strategy for c, _, _ in built)
                why = (f"every component taking it ({', '.join(takers[name])}) sets its own" if takers[name]
                       else f"none of its components ({names}) takes it; strategies that do: {strategies_taking(name)}")
                raise ProbekitUsageError(
                    f"The {name!r} parameter of MixtureSelector ({SHARED[name]} on the command line) must reach a "
                    f"component, but {why}. Got {value!r} instead.")
        return built

    def _check_params(self, pool: "Pool") -> None:
        self._selectors()  # parse, resolve names and validate every component before any work

    def _rank(self, pool: "Pool", n: int, seed: int) -> Ranking:
        built = self._selectors()
        labels = _labels([c for c, _, _ in built])
        total = sum(c.weight for c, _, _ in built)
        shares = [c.weight / total for c, _, _ in built]
        rankings, positions = [], []
        for i, (c, selector, _) in enumerate(built):
            # The pool is already canonical and validated: run the component's own steps of
            # Selector.select without building (and fingerprinting) a ProbeSet per component.
            try:
                selector._check_params(pool)
                ranking = selector._rank(pool, n, component_seed(seed, i))
            except ProbekitUsageError as exc:
                raise ProbekitUsageError(f"mixture component {i} ({c.strategy}): {exc}") from exc
            positions.append(selector._checked_indices(ranking, n, len(pool)))
            rankings.append(ranking)
        cursor = [0] * len(built)
        count = [0] * len(built)
        taken: set[int] = set()
        idx, slices = [], []
        for k in range(1, n + 1):
            i = chairman_next(shares, count, k)
            ranked = positions[i]
            # Never runs past the end: before probe k, component i has used count[i] ids
            # and skipped at most k - 1 - count[i] taken by others, so fewer than n.
            while int(ranked[cursor[i]]) in taken:
                cursor[i] += 1
            pick = int(ranked[cursor[i]])
            own = None if rankings[i].slices is None else rankings[i].slices[cursor[i]]
            cursor[i] += 1
            count[i] += 1
            taken.add(pick)
            idx.append(pick)
            slices.append(labels[i] if own is None else f"{labels[i]}/{own}")
        info = {
            "components": [
                {"label": labels[i], "strategy": c.strategy, "share": shares[i], "seed": component_seed(seed, i),
                 "count": count[i], "skipped_duplicates": cursor[i] - count[i],
                 "params": selector.provenance_params(), "inherited": inherited, "info": rankings[i].info}
                for i, (c, selector, inherited) in enumerate(built)
            ],
            "counts": {labels[i]: count[i] for i in range(len(built))},
        }
        return Ranking(indices=np.asarray(idx, dtype=np.int64), slices=slices, info=info)

    @classmethod
    def example(cls) -> "MixtureSelector":
        # Only strategies whose defaults work on make_test_pool (no embedding model needed).
        return cls(components=[
            {"strategy": "response", "weight": 0.75, "params": {"n_clusters": 12}},
            {"strategy": "random", "weight": 0.25},
        ])
