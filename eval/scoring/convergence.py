"""The basis-set view: score every prefix of one nested selection, towards the full pool.

Selections are rankings: the first m probes of a selection of n are the
selection of m. So one selection per trajectory gives a whole family of probe
sets (8 ⊂ 16 ⊂ 32 ⊂ ...), like a basis-set family, and the full pool is the
"complete basis" limit. :func:`convergence` scores each prefix size with
:func:`probekit.eval.scoring.design_score.score_design` and measures its fidelity to
the limit: the rank correlation over time between the prefix's signal and the
full pool's, per trajectory (median over trajectories).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from probekit.errors import ProbekitUsageError
from probekit.eval.scoring.design_score import DesignScore, full_pool_signal, run_signal, score_signals
from probekit.eval.scoring.lead import check_pilot, fidelity
from probekit.eval.scoring.signals import SignalSpec

__all__ = ["ConvergencePoint", "convergence"]

FULL_POOL = 0  # the size that stands for "every pool example" in a convergence table


@dataclass(frozen=True)
class ConvergencePoint:
    size: int  # probes (FULL_POOL: the whole pool of each trajectory)
    score: DesignScore
    fidelity: float  # median over trajectories of the rank correlation with the full pool's signal


def convergence(
    transitions: list,
    nulls: list,
    ranking_of: Callable[[Any], Sequence],
    sizes: Sequence[int],
    *,
    spec: SignalSpec = SignalSpec(),
    rule: Any = None,
    rules: Sequence[Any] | None = None,
    hit_fraction: float = 0.5,
    pilot: int = 0,
) -> list[ConvergencePoint]:
    """Score the prefixes ``ranking_of(traj)[:m]`` for each m in ``sizes``, then the full pool.

    ``ranking_of`` returns one ranking per trajectory (probe ids or pool
    indices, longest prefix first-needed); it is called once per trajectory.
    A size larger than a trajectory's ranking uses the whole ranking. An empty
    ``sizes`` scores the full pool only (the scalar baselines).

    ``rules``: several alarm rules scored on the same signals (each signal is
    computed once); the points come rule by rule, each rule's sizes in
    increasing order then the full pool. ``rule``: one rule (the default rule
    if neither is given).

    ``pilot``: trajectory records ``[0, pilot)`` are not scored, at any size (a
    design that looked at them to select its probes); 0 scores every record.
    """
    from probekit.alarms import make_rule

    if any(isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1 for m in sizes):
        raise ProbekitUsageError(f"sizes must be a list of ints >= 1. Got {list(sizes)!r} instead.")
    if rules is not None and rule is not None:
        raise ProbekitUsageError("give convergence() either rule= or rules=, not both.")
    rules = list(rules) if rules is not None else [make_rule() if rule is None else rule]
    check_pilot(pilot)
    trajs = list(transitions) + list(nulls)
    rankings = {id(t): list(ranking_of(t)) for t in trajs} if sizes else {}
    by_size = {}
    for m in sorted(set(int(s) for s in sizes)):
        probes = {k: r[:m] for k, r in rankings.items()}
        by_size[m] = ([run_signal(t, probes[id(t)], spec) for t in transitions],
                      [run_signal(t, probes[id(t)], spec) for t in nulls])
    # the full pool is the same for every design: computed once per trajectory and signal, then cached
    by_size[FULL_POOL] = ([full_pool_signal(t, spec) for t in transitions], [full_pool_signal(t, spec) for t in nulls])
    reference = by_size[FULL_POOL][0]
    out = []
    for r in rules:
        for m, (runs, null_runs) in by_size.items():
            score = score_signals(runs, null_runs, spec=spec, rule=r, hit_fraction=hit_fraction, pilot=pilot)
            fid = [fidelity(a.signal, b.signal) for a, b in zip(runs, reference)]
            fid = [f for f in fid if np.isfinite(f)]
            out.append(ConvergencePoint(m, score, float(np.median(fid)) if fid else float("nan")))
    return out
