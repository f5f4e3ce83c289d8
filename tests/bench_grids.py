"""The tiny benchmark grid shared by the bench tests: two families, two designs, one size, two seeds."""
from __future__ import annotations

from probekit.eval.bench import BenchGrid
from probekit.eval.scoring.signals import SignalSpec

TINY = BenchGrid(
    families=("deep-linear", "late-bias"),
    seeds=(0, 1),
    designs=("random", "cluster"),
    sizes=(8,),
    signals=(SignalSpec("shc", window=16),),
    scalar_baselines=("mean_drop",),
)
