"""The selector conformance suite (scikit-learn's ``check_estimator``, for selectors).

Every registered selector must pass it (``tests/test_selectors_common.py``
discovers them through the registry, so a new one cannot skip it), and a
third-party selector can run it in its own tests::

    import pytest
    from probekit.testing import CHECKS, make_test_pool

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    def test_my_selector(check):
        check(MySelector.example(), make_test_pool())

or all at once with ``check_selector(MySelector.example())``. A failing check
raises ``AssertionError`` naming the selector and what broke.

Alarm rules have their own suite, re-exported here from ``probekit.alarms.testing``:
``ALARM_CHECKS``, ``check_alarm_rule(MyRule.example())`` and ``make_test_series``.

The test pool (``make_test_pool``) has what every built-in strategy needs:
text, a precomputed 16-d ``embedding``, a class ``label``, a protected
attribute ``group`` with counterfactual ``pair_id``s, a ``topic`` with a rare
slice, and ``pilot_losses`` (a short loss trajectory per example).
"""
from __future__ import annotations

import pickle
from typing import Any, Callable

import numpy as np

from probekit.errors import ProbekitUsageError
from probekit.params import Interval

# The alarm-rule suite lives beside the rules; it is re-exported here so both suites import alike.
from probekit.alarms.testing import ALARM_CHECKS, check_alarm_rule, make_test_series  # noqa: E402

__all__ = ["ALARM_CHECKS", "CHECKS", "check_alarm_rule", "check_selector", "make_test_pool", "make_test_series"]


def make_test_pool(size: int = 200, seed: int = 0):
    """A small deterministic pool with every column the built-in selectors use."""
    from probekit.pool import Pool
    from probekit.pool.builtin import toy_text_rows

    cols = toy_text_rows(size, seed)
    rng = np.random.default_rng(seed + 1)
    topics = sorted(set(cols["topic"]))
    centers = rng.normal(size=(len(topics), 16))
    topic_idx = np.array([topics.index(t) for t in cols["topic"]])
    embedding = centers[topic_idx] + 0.3 * rng.normal(size=(len(topic_idx), 16))
    # Pilot trajectories: each topic is learned at its own rate, with noise.
    rates = rng.uniform(0.05, 0.4, size=len(topics))
    t = np.arange(24)
    pilot = 2.0 * np.exp(-rates[topic_idx, None] * t) + 0.05 * rng.normal(size=(len(topic_idx), 24))
    cols["embedding"] = embedding.astype(np.float32).tolist()
    cols["pilot_losses"] = np.abs(pilot).astype(np.float32).tolist()
    return Pool.from_dict(cols, id_field="id")


def _fail(selector: Any, check: str, message: str) -> None:
    raise AssertionError(f"{type(selector).__name__} fails {check}: {message}")


def _select(selector: Any, pool: Any, n: int, seed: int = 0):
    return selector.select(pool, n, seed=seed)


def check_output_contract(selector: Any, pool: Any) -> None:
    n = min(17, len(pool))
    ps = _select(selector, pool, n)
    if len(ps) != n or len(set(ps.ids)) != n:
        _fail(selector, "output contract", f"asked for {n} unique probes, got {len(ps)} ({len(set(ps.ids))} unique)")
    idx = np.asarray(ps.indices)
    if idx.ndim != 1 or idx.min() < 0 or idx.max() >= len(pool) or np.unique(idx).size != n:
        _fail(selector, "output contract", f"indices not unique and in range: {idx.tolist()}")
    if list(pool.ids[idx]) != list(ps.ids):
        _fail(selector, "output contract", "ids do not match the pool rows their indices point at")
    prov = ps.provenance
    if prov.strategy != selector.name or prov.pool_fingerprint != pool.fingerprint or prov.seed != 0:
        _fail(selector, "output contract", f"provenance not stamped: {prov}")


def check_nested_prefixes(selector: Any, pool: Any) -> None:
    big = min(40, len(pool))
    full = list(_select(selector, pool, big).ids)
    for m in sorted({1, 2, 5, big // 2, big - 1}):
        head = list(_select(selector, pool, m).ids)
        if head != full[:m]:
            _fail(selector, "nested prefixes", f"select(n={m}) is not the first {m} of select(n={big})")


def check_deterministic_per_seed(selector: Any, pool: Any) -> None:
    a, b = _select(selector, pool, 12, seed=3), _select(selector, pool, 12, seed=3)
    if a != b:
        _fail(selector, "determinism", "two selections with seed 3 differ")


def check_seed_sensitivity(selector: Any, pool: Any) -> None:
    a = list(_select(selector, pool, 20, seed=0).ids)
    b = list(_select(selector, pool, 20, seed=1).ids)
    if selector.stochastic and a == b:
        _fail(selector, "seed sensitivity", "a stochastic selector gave the same ranking for seeds 0 and 1")
    if not selector.stochastic and a != b:
        _fail(selector, "seed sensitivity", "a deterministic selector changed with the seed")


def check_pool_not_mutated(selector: Any, pool: Any) -> None:
    before = (pool.fingerprint, list(pool.columns), len(pool))
    _select(selector, pool, 10)
    pool._fingerprint = None  # recompute from the data, not the cache
    after = (pool.fingerprint, list(pool.columns), len(pool))
    if before != after:
        _fail(selector, "pool not mutated", "the pool's data changed during select")


def check_row_order_invariance(selector: Any, pool: Any) -> None:
    perm = np.random.default_rng(7).permutation(len(pool))
    shuffled = pool.reorder(perm)
    a = list(_select(selector, pool, 15).ids)
    b = list(_select(selector, shuffled, 15).ids)
    if a != b:
        _fail(selector, "row-order invariance", "shuffling the pool rows changed the selection")


def check_n_edges(selector: Any, pool: Any) -> None:
    if len(_select(selector, pool, 1)) != 1:
        _fail(selector, "n edges", "n=1 did not give one probe")
    everything = _select(selector, pool, len(pool))
    if sorted(everything.ids) != sorted(pool.ids.tolist()):
        _fail(selector, "n edges", "n=len(pool) did not rank every example")
    for bad in (0, len(pool) + 1):
        try:
            _select(selector, pool, bad)
        except ProbekitUsageError as exc:
            expected = f"The 'n' parameter of {type(selector).__name__}.select must be an int in the range [1, {len(pool)}]. Got {bad} instead."
            if str(exc) != expected:
                _fail(selector, "n edges", f"n={bad} gave {str(exc)!r}, expected {expected!r}")
        else:
            _fail(selector, "n edges", f"n={bad} did not raise")


def _bad_values(constraint: Any) -> list[Any]:
    """Values the constraint refuses (generated, so every declared parameter is probed)."""
    candidates = [-10**9, 10**12, 1.5, -0.5, "__not_allowed__", object(), [object()], None, True]
    if isinstance(constraint, Interval):
        if constraint.low is not None:
            candidates.append(constraint.low - (1 if constraint.kind is int else 1e-3))
        if constraint.high is not None:
            candidates.append(constraint.high + (1 if constraint.kind is int else 1e-3))
    accepts = constraint.accepts if hasattr(constraint, "accepts") else (
        (lambda v: v is None) if constraint is None else (lambda v: isinstance(v, constraint)))
    return [v for v in candidates if not accepts(v)][:4]


def check_parameter_validation(selector: Any, pool: Any) -> None:
    params = selector.get_params()
    if set(params) != set(type(selector)._param_names()):
        _fail(selector, "parameter validation", "get_params does not return the constructor parameters")
    clone = type(selector)(**params)
    if clone.get_params() != params:
        _fail(selector, "parameter validation", "the constructor changed the parameters it was given")
    for name, constraint in type(selector)._constraints.items():
        for bad in _bad_values(constraint):
            broken = type(selector)(**params).set_params(**{name: bad})  # construction only stores
            try:
                _select(broken, pool, 3)
            except ProbekitUsageError as exc:
                if f"'{name}' parameter" not in str(exc):
                    _fail(selector, "parameter validation", f"{name}={bad!r} raised without naming the parameter: {exc}")
            else:
                _fail(selector, "parameter validation", f"{name}={bad!r} was accepted")


def check_picklable(selector: Any, pool: Any) -> None:
    clone = pickle.loads(pickle.dumps(selector))
    if list(_select(clone, pool, 8).ids) != list(_select(selector, pool, 8).ids):
        _fail(selector, "picklable", "a pickled copy selects differently")


def check_registry_round_trip(selector: Any, pool: Any) -> None:
    from probekit.registry import SELECTORS, make_selector

    if selector.name not in SELECTORS.names():
        _fail(selector, "registry round trip", f"{selector.name!r} is not registered")
    if SELECTORS.load(selector.name) is not type(selector):
        _fail(selector, "registry round trip", f"the registry maps {selector.name!r} to another class")
    rebuilt = make_selector(selector.name, **selector.get_params())
    if list(_select(rebuilt, pool, 8).ids) != list(_select(selector, pool, 8).ids):
        _fail(selector, "registry round trip", "the registry-built selector selects differently")


CHECKS: list[Callable[[Any, Any], None]] = [
    check_output_contract,
    check_nested_prefixes,
    check_deterministic_per_seed,
    check_seed_sensitivity,
    check_pool_not_mutated,
    check_row_order_invariance,
    check_n_edges,
    check_parameter_validation,
    check_picklable,
    check_registry_round_trip,
]


def check_selector(selector: Any, pool: Any = None) -> None:
    """Run every check; the first failure raises AssertionError."""
    pool = make_test_pool() if pool is None else pool
    for check in CHECKS:
        check(selector, pool)
