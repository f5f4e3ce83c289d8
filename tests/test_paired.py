"""Paired tests against random, by seed: exact sign-flip p-values, bootstrap intervals, Holm, and the report's marks.

The designs here are synthetic cells whose per-seed values are set by hand, so every p-value is known:
with every difference of one sign, the two-sided sign-flip p-value is 2 / 2^n for n seeds.
"""
from __future__ import annotations

import dataclasses

import pytest

from probekit.eval.scoring.paired import (bootstrap_interval, compare, family_tests, holm, sign_flip_p,
                                          smallest_p_value)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 12])
def test_differences_all_of_one_sign_give_the_exact_smallest_p(n):
    expected = 2 / 2 ** n  # one pattern of 2^n as extreme on each side
    assert sign_flip_p([0.1 * (k + 1) for k in range(n)]) == pytest.approx(expected, rel=1e-12)
    assert sign_flip_p([-0.3] * n) == pytest.approx(expected, rel=1e-12)
    assert smallest_p_value(n) == pytest.approx(expected, rel=1e-12)
    assert smallest_p_value(5) == 0.0625 and smallest_p_value(1) == 1.0 and smallest_p_value(0) == 1.0


def test_a_p_value_counted_by_hand():
    # differences 3, -1, 2 (mean 4/3): of the 8 sign patterns, means >= 4/3 are (3, 1, 2) and (3, -1, 2),
    # so one side holds 2 / 8 and the two-sided p-value is 2 * 2 / 8
    assert sign_flip_p([3.0, -1.0, 2.0]) == pytest.approx(0.5)
    assert sign_flip_p([1.0]) == 1.0 and sign_flip_p([]) != sign_flip_p([])  # one pair: 1; none: NaN


def test_identical_designs_are_indistinguishable():
    values = {s: 0.1 * s for s in range(8)}
    c = compare(values, dict(values), family="f", label="cluster", size=8, score="warning")
    assert c.differences == (0.0,) * 8 and c.p_value == 1.0 and (c.ci_low, c.ci_high) == (0.0, 0.0)
    tests = family_tests(_cells({0: values}, {0: values}, sizes=(8,)), "f", SIGNAL, RULE)
    assert [x.verdict for x in tests.comparisons] == ["indistinguishable"] * 2
    assert tests.resolvable and tests.sentence().startswith("no design is distinguishable from random at any size")


def test_bootstrap_interval_known_and_deterministic():
    assert bootstrap_interval([0.25] * 5) == (0.25, 0.25)  # every resample has the same mean
    assert bootstrap_interval([0.5]) == (0.5, 0.5)
    d = [0.1, 0.3, 0.2, 0.05, 0.4]
    lo, hi = bootstrap_interval(d)
    assert min(d) <= lo < sum(d) / 5 < hi <= max(d)  # a resample's mean lies between the extremes
    assert bootstrap_interval(d) == (lo, hi)  # seeded: the same cells give the same interval
    c = compare({s: 0.5 + v for s, v in enumerate(d)}, {s: 0.5 for s in range(5)})
    assert c.mean_difference == pytest.approx(0.21) and (c.ci_low, c.ci_high) == pytest.approx((lo, hi))
    assert c.p_value == 0.0625


def test_holm_on_a_known_list():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> made non-decreasing: 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and holm([]) == []
    assert holm([0.01]) == [0.01]


# -- synthetic cells -------------------------------------------------------------------------------
SIGNAL = {"statistic": "shc", "window": 16, "stride": 1, "detrend": "none"}
RULE = {"name": "running-min", "params": {}}


def _point(size, lead, detect):
    """A point whose seed s has mean lead fraction lead[s] and detection rate detect[s] (one episode per seed)."""
    seeds = sorted(lead)
    return {"size": size, "fidelity": None, "signal": "s", "rule": "r", "auc": 0.0, "curve": {},
            "fixed_threshold": {}, "episodes": [], "quiet_units": 40, "null_runs": 20,
            "at_far_5pct": {"detection": 0.0, "far": 0.0, "mean_lead_fraction": sum(lead.values()) / len(seeds),
                            "median_lead": None, "threshold": 1.0, "leads": [None] * len(seeds),
                            "detected": sum(detect.values()) / len(seeds), "median_latency": 1.0,
                            "mean_latency_fraction": 0.1, "latencies": [1] * len(seeds),
                            "latency_fractions": [0.1] * len(seeds)},
            "at_far_5pct_by_seed": [{"seed": s, "episodes": 1, "hits": 0, "median_lead": None,
                                     "mean_lead_fraction": lead[s], "detected": int(detect[s]),
                                     "median_latency": 1.0, "mean_latency_fraction": 0.1} for s in seeds]}


def _cells(random, cluster, sizes=(8, 16), detect_cluster=None, family="f"):
    """Cells of random and cluster: size -> {seed: lead fraction} (key 0: every size); every seed detected unless
    ``detect_cluster`` (size -> {seed: 0 or 1}) says otherwise. Each cell ends with its full pool (random's values)."""
    from probekit.eval.bench.cells import Cell

    full = random.get(0) or random[sizes[-1]]

    def points(values, detect):
        out = []
        for size in sizes:
            lead = values.get(size, values.get(0))
            out.append(_point(size, lead, (detect or {}).get(size) or {s: 1 for s in lead}))
        return out + [_point(0, full, {s: 1 for s in full})]

    return [Cell.from_json({"family": family, "design": design, "signal": SIGNAL, "rule": RULE, "error": None,
                            "points": points(values, detect)})
            for design, values, detect in (("random", random, None), ("cluster", cluster, detect_cluster))]


def test_a_design_better_at_one_size_on_one_score():
    seeds = range(8)  # 2 / 2^8 = 0.0078 <= 0.05 / 4: a sign-consistent difference survives Holm over 4
    random = {s: 0.1 + 0.01 * s for s in seeds}
    cells = _cells({8: random, 16: random}, {8: {s: v + 0.2 for s, v in random.items()}, 16: dict(random)},
                   detect_cluster={8: {s: 0 for s in seeds}})  # detection: every seed of cluster 8 misses
    tests = family_tests(cells, "f", SIGNAL, RULE)
    got = {(c.size, c.score): (c.verdict, c.p_value) for c in tests.comparisons}
    assert got[(8, "warning")] == ("better", pytest.approx(2 / 256))
    assert got[(8, "detection")] == ("worse", pytest.approx(2 / 256))
    assert got[(16, "warning")] == ("indistinguishable", 1.0) and got[(16, "detection")][0] == "indistinguishable"
    by = {(c.size, c.score): c for c in tests.comparisons}
    assert by[(8, "warning")].p_adjusted == pytest.approx(4 * 2 / 256)  # Holm: the two smallest x 4, x 3 -> max
    better = by[(8, "warning")]
    assert better.mean_difference == pytest.approx(0.2) and better.ci_low == pytest.approx(0.2)
    assert tests.m == 4 and tests.n_seeds == 8 and tests.resolvable
    assert tests.sentence() == ("distinguishable from random (Holm over 4 comparisons, alpha 0.05): cluster better "
                                "than random at 8 under warning; cluster worse than random at 8 under detection; "
                                "the other 2 comparisons indistinguishable")
    assert all(c.size != 0 for c in tests.comparisons)  # never the full pool


def test_five_seeds_cannot_call_anything_different():
    random = {s: 0.1 for s in range(5)}
    cells = _cells({0: random}, {0: {s: 0.9 for s in range(5)}})
    tests = family_tests(cells, "f", SIGNAL, RULE)
    assert all(c.p_value == 0.0625 or c.score == "detection" for c in tests.comparisons)
    assert [c.verdict for c in tests.comparisons] == ["indistinguishable"] * 4 and not tests.resolvable
    assert tests.sentence() == ("no design can be told from random, under warning or detection (5 seeds: the smallest "
                                "possible p-value is 0.0625; nothing can be called different)")


def test_too_many_comparisons_for_the_seeds_is_said_too():
    from probekit.eval.scoring.paired import FamilyTests

    c = compare({s: 1.0 for s in range(6)}, {s: 0.0 for s in range(6)})  # p = 2 / 64 = 0.03125
    tests = FamilyTests("f", (dataclasses.replace(c, verdict="indistinguishable"),) * 2)
    assert not tests.resolvable
    assert "Holm over the family's 2 comparisons needs one <= 0.05/2 = 0.025" in tests.sentence()


def test_pairs_are_the_seeds_both_have():
    c = compare({1: 0.5, 2: 0.5, 3: 0.5, 9: 0.0}, {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0})
    assert c.seeds == (1, 2, 3) and c.differences == (0.5, 0.5, 0.5) and c.p_value == pytest.approx(0.25)
    assert compare({1: 0.5}, {2: 0.5}) is None


def test_cells_without_detection_are_tested_on_warning_only():
    from probekit.eval.bench.cells import Cell

    cells = _cells({0: {s: 0.1 for s in range(3)}}, {0: {s: 0.2 for s in range(3)}})
    old = []
    for c in cells:
        data = c.to_json()
        for p in data["points"]:
            p["at_far_5pct"]["detected"] = None
            for s in p["at_far_5pct_by_seed"]:
                s["detected"] = None
        old.append(Cell.from_json(data))
    tests = family_tests(old, "f", SIGNAL, RULE)
    assert {c.score for c in tests.comparisons} == {"warning"} and tests.m == 2


def test_the_report_marks_each_design_row_and_says_what_it_found():
    from probekit.eval.bench import BenchGrid, GridResult
    from probekit.eval.reports.report import render_markdown
    from probekit.eval.scoring.signals import SignalSpec

    seeds = range(8)
    random = {s: 0.1 + 0.01 * s for s in seeds}
    cells = _cells({8: random, 16: random}, {8: {s: v + 0.2 for s, v in random.items()}, 16: dict(random)})
    grid = BenchGrid(families=("f",), seeds=tuple(seeds), designs=("random", "cluster"), sizes=(8, 16),
                     signals=(SignalSpec("shc", window=16),), scalar_baselines=())
    text = render_markdown(GridResult(grid, cells), "x")
    warning, detection = text.split("### Detection")[0], text.split("### Detection")[1].split("## What")[0]
    assert "| cluster | 8 | no warning ↑ |" in warning and "| cluster | 16 | no warning ≈ |" in warning
    assert "| random | 8 | no warning |" in warning and "| cluster | full | no warning |" in warning  # no mark
    assert "| cluster | 8 | +1 (100%, +10%) ≈ |" in detection
    assert ("- **f**: distinguishable from random (Holm over 4 comparisons, alpha 0.05): cluster better than random "
            "at 8 under warning; the other 3 comparisons indistinguishable; no scalar baseline to compare with.") \
        in text
    assert "| f |  | 8 | 40 (20 + 20) | 2.5% | 8 | 4 | 0.007812 (8 seeds) |  |" in text  # no pool recorded
