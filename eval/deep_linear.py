"""A deep linear network learning a teacher mode by mode (Saxe et al. 2014).

A two-layer linear student y = W2 W1 x, started from a tiny initialisation,
learns a linear teacher M = U diag(s) V^T one singular mode at a time: each
mode sits on a plateau (a saddle), then escapes along an exponential ramp,
strongest mode first. Every escape is a transition with an exactly known
order parameter, the learned strength of mode i, u_i^T W2 W1 v_i / s_i
(0 before, 1 after). That makes it the cheapest honest test bed for the
2RDM: ~1 s in numpy on one core, and the ground truth needs no evaluation set.

This module records the per-sample loss of a fixed pool of inputs every
``record_every`` steps, which is what ``probekit analyze`` reads by default.
The configuration follows the prototype that worked on this machine
(FINDINGS.md): 10 -> 10 -> 10, teacher s = 5, 3, 2, 1, init scale 1e-4,
SGD lr 0.005, batch 32, 3000 steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class DeepLinearConfig:
    width: int = 10  # input = hidden = output width; 10 leaves 6 unused teacher modes
    teacher_strengths: tuple = (5.0, 3.0, 2.0, 1.0)  # distinct, so escapes are separated
    init_scale: float = 1e-4  # small init -> long plateaus -> room for early warning
    lr: float = 0.005  # small enough that SGD tracks gradient flow
    batch_size: int = 32
    steps: int = 3000  # the weakest mode (s = 1) finishes by ~2000
    record_every: int = 5  # 600 records: a W = 32 window spans 160 steps
    n_pool: int = 256  # fixed probe candidates, drawn once from the input law
    label_noise: float = 0.0  # Gaussian noise on training targets only
    onset_fraction: float = 0.1  # onset: a mode passes 10% of its strength
    seed: int = 0


@dataclass(frozen=True)
class DeepLinearRun:
    """Losses [records, pool] and the ground truth of one run."""

    config: DeepLinearConfig
    steps: np.ndarray  # [records]
    losses: np.ndarray  # [records, pool] float32 per-sample losses
    mode_strength: np.ndarray  # [records, modes] learned fraction of each teacher mode
    onset_steps: np.ndarray  # [modes] first record step past onset_fraction (-1: never)
    midpoint_steps: np.ndarray  # [modes] first record step past 0.5 (-1: never)
    pool_inputs: np.ndarray = field(repr=False, default=None)  # [pool, width]


def _first_step_above(values: np.ndarray, steps: np.ndarray, level: float) -> int:
    above = np.nonzero(values >= level)[0]
    return int(steps[above[0]]) if above.size else -1


def run_deep_linear(config: DeepLinearConfig | None = None) -> DeepLinearRun:
    """Train the student and record every pool example's loss along the way."""
    cfg = config or DeepLinearConfig()
    rng = np.random.default_rng(cfg.seed)
    d, k = cfg.width, len(cfg.teacher_strengths)
    # Teacher: random orthogonal singular vectors, the given strengths.
    u = np.linalg.qr(rng.normal(size=(d, d)))[0]
    v = np.linalg.qr(rng.normal(size=(d, d)))[0]
    s = np.zeros(d)
    s[:k] = cfg.teacher_strengths
    teacher = u @ np.diag(s) @ v.T  # [out, in]
    w1 = cfg.init_scale * rng.normal(size=(d, d))  # [hidden, in]
    w2 = cfg.init_scale * rng.normal(size=(d, d))  # [out, hidden]
    pool_x = rng.normal(size=(cfg.n_pool, d))  # [pool, in]
    pool_y = pool_x @ teacher.T

    steps, losses, strength = [], [], []
    for step in range(cfg.steps + 1):
        if step % cfg.record_every == 0:
            err = pool_x @ (w2 @ w1).T - pool_y  # [pool, out]
            losses.append(0.5 * (err**2).sum(axis=1))
            learned = np.einsum("oj,oi,ij->j", u[:, :k], w2 @ w1, v[:, :k])  # u_j^T W v_j
            strength.append(learned / s[:k])
            steps.append(step)
        if step == cfg.steps:
            break
        x = rng.normal(size=(cfg.batch_size, d))  # online: a fresh batch each step
        y = x @ teacher.T + cfg.label_noise * rng.normal(size=(cfg.batch_size, d))
        h = x @ w1.T  # [batch, hidden]
        err = h @ w2.T - y  # [batch, out]
        g2 = err.T @ h / cfg.batch_size
        g1 = (err @ w2).T @ x / cfg.batch_size
        w1 -= cfg.lr * g1
        w2 -= cfg.lr * g2

    steps_arr = np.asarray(steps, dtype=np.int64)
    strength_arr = np.asarray(strength)
    onset = [_first_step_above(strength_arr[:, i], steps_arr, cfg.onset_fraction) for i in range(k)]
    mid = [_first_step_above(strength_arr[:, i], steps_arr, 0.5) for i in range(k)]
    return DeepLinearRun(
        config=cfg,
        steps=steps_arr,
        losses=np.asarray(losses, dtype=np.float32),
        mode_strength=strength_arr,
        onset_steps=np.asarray(onset, dtype=np.int64),
        midpoint_steps=np.asarray(mid, dtype=np.int64),
        pool_inputs=pool_x,
    )
