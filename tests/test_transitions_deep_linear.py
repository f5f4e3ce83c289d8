"""The deep-linear reference run's pool: a sample of the training inputs' law, with the columns concerns read."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta

from probekit.eval.families.deep_linear import DeepLinear, run_deep_linear


@pytest.mark.parametrize("preset", ["small", "default"])
def test_the_pool_is_a_sample_of_the_training_law_with_its_slices_at_their_prevalence(preset):
    # Training draws fresh inputs from N(0, I) at every step, and so does the pool (once): each slice's
    # prevalence in the pool is a binomial sample of its prevalence in the law. Tolerance: 4 standard
    # errors over seeds 0-4 pooled. The slow-mode concern (|cos(x, v_slowest)| >= 0.5) has probability
    # P(Beta(1/2, (d - 1)/2) >= 1/4) under the law; each dominant-mode slice 1/modes, by symmetry.
    run = DeepLinear()
    pools = []
    for seed in range(5):
        config = run.make_config(preset, seed=seed, steps=1)  # the pool is drawn before training
        pools.append(run.record(config, lambda n: None).pool)
    n = sum(len(p["probe_id"]) for p in pools)
    d, modes = config.width, len(config.teacher_strengths)
    overlap = np.concatenate([p["slow_overlap"] for p in pools])
    slices = np.concatenate([p["slice"] for p in pools])
    expected = beta(0.5, (d - 1) / 2).sf(0.25)
    assert abs(np.mean(overlap >= 0.5) - expected) <= 4 * np.sqrt(expected * (1 - expected) / n)
    for j in range(modes):
        share = np.mean(slices == f"mode_{j + 1}")
        assert abs(share - 1 / modes) <= 4 * np.sqrt((1 / modes) * (1 - 1 / modes) / n)


def test_slow_overlap_is_the_cosine_with_the_slowest_mode():
    config = DeepLinear().make_config("small", seed=0, steps=1)
    pool = DeepLinear().record(config, lambda n: None).pool
    teacher = run_deep_linear(config).teacher_inputs  # [modes, width] v_j
    x = np.asarray(pool["input"], dtype=np.float64)
    expected = np.abs(x @ teacher[np.argmin(config.teacher_strengths)]) / np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(pool["slow_overlap"], expected, rtol=1e-5)
    assert (np.asarray(pool["slow_overlap"]) <= 1 + 1e-6).all()
