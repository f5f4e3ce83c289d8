"""Paired tests of every probe design against random probes of the same size, seed by seed.

For one family, signal and rule (the report's primary ones), every design other than random
is compared with random at every prefix size (not the full pool: there every design watches
the same probes). Each design is read at its own threshold matched to a 5% false-alarm rate
(``Point.at_far_5pct_by_seed``); the pairs are the seeds both were scored on, and a seed's
value is taken over that seed's episodes:

- ``warning``: the mean lead fraction (a miss counting 0);
- ``detection``: the detection rate (the first alarm from the hit window on, by the midpoint).

Per comparison: the per-seed differences (design - random), their mean, a 95% bootstrap
percentile interval over seeds (``scipy.stats.bootstrap``; percentile because BCa is
undefined when the differences are all equal, and with a handful of seeds no interval has
its nominal coverage: it describes, the test decides), and a two-sided p-value from a paired
sign-flip permutation test (``scipy.stats.permutation_test``, ``permutation_type="samples"``:
each seed's difference keeps or flips its sign; exact, over all 2^n patterns, up to
:data:`MAX_EXACT_SEEDS` seeds).

The p-values of a family's comparisons (every design, every size, both scores) are adjusted
by Holm's step-down method (:func:`holm`): it bounds the chance of calling *any* of them
different when none is (the family-wise error rate) under any dependence between them, and
these are dependent (they share random's values, nested prefixes of one selection, and the
same alarms for warning and detection). Benjamini-Hochberg (``scipy.stats.false_discovery_control``)
bounds only the expected share of false calls, and under arbitrary dependence only in its
Benjamini-Yekutieli form; each mark in the report is read as a claim of its own, so the
family-wise bound is the one that fits. scipy has no Holm; it is a few lines here.

With n seeds the smallest two-sided sign-flip p-value is 2 / 2^n (every difference of one
sign): 0.0625 at 5 seeds, so nothing can be called different, and Holm's first step needs
p <= alpha / m over m comparisons (:attr:`FamilyTests.resolvable`).
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

__all__ = ["SCORES", "Comparison", "FamilyTests", "bootstrap_interval", "compare", "family_tests", "grid_tests",
           "holm", "seed_values", "sign_flip_p", "smallest_p_value"]

SCORES = ("warning", "detection")
ALPHA = 0.05
MAX_EXACT_SEEDS = 16  # 2^16 sign patterns: exact; more seeds: Monte Carlo, seeded
RESAMPLES = 9999  # bootstrap resamples, and sign patterns drawn beyond MAX_EXACT_SEEDS
RNG_SEED = 0  # fixed: the same cells give the same intervals and p-values


@dataclass(frozen=True)
class Comparison:
    """One design at one size against random at the same size, on one score, paired by seed."""

    family: str
    design: str
    size: int
    score: str  # "warning" (mean lead fraction) or "detection" (detection rate)
    seeds: tuple[int, ...]
    differences: tuple[float, ...]  # design - random, per seed
    mean_difference: float
    ci_low: float  # 95% bootstrap percentile interval of the mean difference, over seeds
    ci_high: float
    p_value: float  # two-sided paired sign-flip permutation test
    p_adjusted: float = float("nan")  # Holm, over the family's comparisons
    verdict: str = ""  # "better", "worse" or "indistinguishable" (after correction)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["seeds"], out["differences"] = list(self.seeds), list(self.differences)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def smallest_p_value(n: int) -> float:
    """The smallest two-sided p-value :func:`sign_flip_p` can give with n pairs (1 with none)."""
    if n <= 0:
        return 1.0
    patterns = 2 ** n if n <= MAX_EXACT_SEEDS else RESAMPLES + 1
    return min(1.0, 2.0 / patterns)


def _rng_kwargs() -> dict:
    """The seeded generator, under the keyword this scipy takes (``rng`` from 1.15, ``random_state`` before)."""
    from scipy import stats

    key = "rng" if "rng" in inspect.signature(stats.permutation_test).parameters else "random_state"
    return {key: np.random.default_rng(RNG_SEED)}


def sign_flip_p(differences: Iterable[float]) -> float:
    """Two-sided p-value of the mean of paired differences, by flipping their signs (NaN with none)."""
    from scipy import stats

    d = np.asarray(list(differences), dtype=np.float64)
    if d.size == 0:
        return float("nan")
    if d.size == 1:  # two patterns, d and -d: the observed one is always at least as extreme as half of them
        return 1.0
    exact = d.size <= MAX_EXACT_SEEDS
    res = stats.permutation_test((d,), np.mean, vectorized=True, permutation_type="samples",
                                 n_resamples=2 ** d.size if exact else RESAMPLES, alternative="two-sided",
                                 axis=-1, **_rng_kwargs())
    return float(min(1.0, res.pvalue))


def bootstrap_interval(differences: Iterable[float], level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over seeds; a point when the seeds cannot vary it."""
    from scipy import stats

    d = np.asarray(list(differences), dtype=np.float64)
    if d.size == 0:
        return float("nan"), float("nan")
    if d.size < 2 or np.all(d == d[0]):  # every resample has the same mean
        m = float(d.mean())
        return m, m
    res = stats.bootstrap((d,), np.mean, vectorized=True, method="percentile", n_resamples=RESAMPLES,
                          confidence_level=level, axis=-1, **_rng_kwargs())
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def holm(pvalues: Iterable[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: sorted ascending, the i-th (from 0) of m
    is multiplied by m - i, then made non-decreasing, capped at 1. Reject where adjusted <= alpha."""
    p = np.asarray(list(pvalues), dtype=np.float64)
    if p.size == 0:
        return []
    order = np.argsort(p, kind="stable")
    steps = np.minimum(1.0, (p.size - np.arange(p.size)) * p[order])
    out = np.empty(p.size)
    out[order] = np.maximum.accumulate(steps)
    return out.tolist()


def seed_values(point: Any, score: str) -> dict[int, float]:
    """seed -> the score's per-seed value of a ``Point`` at its 5%-FAR threshold ({} if not scored)."""
    if score == "warning":
        return {s.seed: float(s.mean_lead_fraction) for s in point.at_far_5pct_by_seed}
    if score == "detection":
        return {s.seed: float(s.detection_rate) for s in point.at_far_5pct_by_seed if s.detection_rate is not None}
    raise ValueError(f"score must be one of {SCORES}. Got {score!r} instead.")


def compare(design: dict[int, float], random: dict[int, float], *, family: str = "", label: str = "",
            size: int = 0, score: str = "warning") -> Comparison | None:
    """Compare per-seed values (seed -> value) on the seeds both have; None without one in common."""
    seeds = tuple(sorted(set(design) & set(random)))
    if not seeds:
        return None
    d = tuple(float(design[s] - random[s]) for s in seeds)
    lo, hi = bootstrap_interval(d)
    return Comparison(family, label, int(size), score, seeds, d, float(np.mean(d)), lo, hi, sign_flip_p(d))


def _decide(c: Comparison, p_adjusted: float, alpha: float) -> Comparison:
    if p_adjusted <= alpha and c.mean_difference != 0:
        verdict = "better" if c.mean_difference > 0 else "worse"
    else:
        verdict = "indistinguishable"
    return dataclasses.replace(c, p_adjusted=float(p_adjusted), verdict=verdict)


@dataclass(frozen=True)
class FamilyTests:
    """Every design x size x score of one family against random, Holm-adjusted together."""

    family: str
    comparisons: tuple[Comparison, ...] = ()
    alpha: float = ALPHA

    @property
    def m(self) -> int:
        return len(self.comparisons)

    @property
    def n_seeds(self) -> int:
        return max((len(c.seeds) for c in self.comparisons), default=0)

    @property
    def smallest_p(self) -> float:
        return smallest_p_value(self.n_seeds)

    @property
    def resolvable(self) -> bool:
        """Whether any comparison could pass Holm's first step (p <= alpha / m) at all."""
        return self.m > 0 and self.smallest_p <= self.alpha / self.m

    def significant(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict in ("better", "worse")]

    def verdict(self, design: str, size: int, score: str) -> str | None:
        found = next((c for c in self.comparisons if (c.design, c.size, c.score) == (design, size, score)), None)
        return None if found is None else found.verdict

    def resolution(self) -> str:
        """What the number of seeds allows, in one clause."""
        n, p = self.n_seeds, self.smallest_p
        head = f"{n} seed{'s' if n != 1 else ''}: the smallest possible p-value is {p:.4g}"
        if p > self.alpha:
            return f"{head}; nothing can be called different"
        if p > self.alpha / self.m:
            return (f"{head}, but Holm over the family's {self.m} comparisons needs one <= {self.alpha:g}/{self.m} "
                    f"= {self.alpha / self.m:.2g}; nothing can be called different")
        return f"{head}, Holm over {self.m} comparisons needs one <= {self.alpha / self.m:.2g}"

    def sentence(self) -> str:
        """Whether any design is distinguishable from random: which, at which sizes, under which score."""
        if not self.comparisons:
            return "no paired test against random (no random cell, or no seed in common)"
        if not self.resolvable:
            return f"no design can be told from random, under warning or detection ({self.resolution()})"
        found = self.significant()
        if not found:
            best = min(self.comparisons, key=lambda c: c.p_adjusted)
            return (f"no design is distinguishable from random at any size, under warning or detection (Holm over "
                    f"{self.m} comparisons; the smallest adjusted p-value is {best.p_adjusted:.3g}, {best.design} "
                    f"{best.size} under {best.score})")
        parts = []
        for verdict in ("better", "worse"):
            for design in dict.fromkeys(c.design for c in found if c.verdict == verdict):
                by_score = []
                for score in SCORES:
                    sizes = [str(c.size) for c in found if (c.design, c.verdict, c.score) == (design, verdict, score)]
                    if sizes:
                        by_score.append(f"at {', '.join(sizes)} under {score}")
                parts.append(f"{design} {verdict} than random {' and '.join(by_score)}")
        rest = self.m - len(found)
        return (f"distinguishable from random (Holm over {self.m} comparisons, alpha {self.alpha:g}): "
                f"{'; '.join(parts)}; the other {rest} comparison{'s' if rest != 1 else ''} indistinguishable")

    def to_json(self) -> dict:
        return {"family": self.family, "alpha": self.alpha, "comparisons": [c.to_json() for c in self.comparisons],
                "n_seeds": self.n_seeds, "smallest_possible_p": self.smallest_p, "resolvable": self.resolvable}


def family_tests(cells: list, family: str, signal: dict, rule: dict, alpha: float = ALPHA) -> FamilyTests:
    """Every design of ``family`` under one signal and rule against random, at every prefix size, Holm-adjusted.

    ``cells``: typed cells (``probekit.eval.bench.cells.Cell``); failed cells are left out. The
    reference is the design labelled ``random``; sizes it lacks are not compared."""
    mine = [c for c in cells if c.family == family and c.kind == "design" and c.ok
            and c.signal == signal and c.rule == rule]
    random = next((c for c in mine if c.design == "random"), None)
    if random is None:
        return FamilyTests(family, (), alpha)
    found = []
    for cell in mine:
        if cell is random:
            continue
        for p in cell.points:
            ref = random.point(p.size)
            if p.size == 0 or ref is None:
                continue
            for score in SCORES:
                c = compare(seed_values(p, score), seed_values(ref, score), family=family, label=cell.design,
                            size=p.size, score=score)
                if c is not None:
                    found.append(c)
    adjusted = holm(c.p_value for c in found)
    return FamilyTests(family, tuple(_decide(c, a, alpha) for c, a in zip(found, adjusted)), alpha)


def grid_tests(result: Any, alpha: float = ALPHA) -> dict[str, FamilyTests]:
    """:func:`family_tests` of every family of a ``GridResult``, under its primary signal and rule."""
    grid = result.grid
    signal, rule = dataclasses.asdict(grid.signals[0]), grid.rules[0].as_dict()
    return {fam: family_tests(result.cells, fam, signal, rule, alpha) for fam in grid.families}
