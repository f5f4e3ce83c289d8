"""A deep linear network learning a teacher mode by mode (Saxe et al. 2014).

A two-layer linear student y = W2 W1 x, started from a tiny initialisation,
learns a linear teacher M = U diag(s) V^T one singular mode at a time: each
mode sits on a plateau (a saddle), then escapes along an exponential ramp,
strongest mode first. Every escape is a transition with an exactly known
order parameter, the learned strength of mode i, u_i^T W2 W1 v_i / s_i
(0 before, 1 after). That makes it the cheapest honest test bed for the
2RDM: ~1 s in numpy on one core, and the ground truth needs no evaluation set.

This module records the per-sample loss of a fixed pool of inputs every
``record_every`` steps, which is what ``probekit analyze`` reads by default,
and registers two reference runs for the harness:

- ``deep-linear``: the four saddle escapes. Order parameter per mode: its
  learned strength; onset when it passes 10% of its target (strength 0.1),
  midpoint at 0.5. In the seeds' terms each escape is the *first-order*
  case, "silent alignment": from a small initialisation the weights first
  rotate, during the plateau and with almost no change in the loss, until
  the student's singular vectors line up with the teacher mode's (Atanasov,
  Bordelon & Pehlevan, "Neural networks as kernel learners: the silent
  alignment effect", ICLR 2022); only then does the mode's strength grow,
  exponentially, then sigmoidally. The order parameter itself moves
  continuously, so by its curve alone the escape would look second order;
  the class follows the mechanism (a rotation onto a new direction) as the
  issue and the seeds do. The early-warning question is whether that
  rotation shows in the probe losses' covariance before the strength reaches
  10%. Deep linear theory (Saxe, McClelland & Ganguli, "Exact solutions to
  the nonlinear dynamics of learning in deep linear neural networks", ICLR
  2014) gives the escape time ~ log(1 / init) / (lr * s).
- ``deep-linear-null``: the same network started on the teacher (every mode
  already learned, a balanced factorisation plus init-scale noise) and trained
  with label noise, so the weights fluctuate around the solution and the
  per-sample losses move without any transition. It trains 500 unrecorded
  steps first (``burn_in``): started exactly on the teacher its losses are
  ~0 and climb to the label-noise floor within ~50 steps, a start-up
  transient that would read as a false alarm and is not what the control is
  for. Its strengths stay at ~1:
  no transition (the change from the first to the last records is below
  0.5).
The pool (``n_pool`` inputs, drawn once from the training inputs' own law N(0, I), never
trained on) mirrors the population: a random sample of what training draws, so each slice sits at
its prevalence in the law up to sampling noise. Columns: ``probe_id``, ``input``, ``target`` (the
teacher's output), ``split`` (``heldout``), ``slice`` (the teacher mode whose input direction the
input overlaps most: each 1/modes in the law, 20-30% in the pools) and ``slow_overlap``
(|cos(x, v)| with v the slowest mode's input direction; >= 0.5, the ``slow-mode`` concern, holds
for 11.7% of the law in 10 dimensions, 10-14% of the default pools, seeds 0-2; 25.3% of the law in
the small preset's 6 dimensions, 25-30% of its pools). The order parameters are read off the
weights: no evaluation set. Version 2 added ``slow_overlap``; the losses are unchanged.

The configuration follows the prototype that worked on this machine
(docs/findings.md): 10 -> 10 -> 10, teacher s = 5, 3, 2, 1, init scale 1e-4,
SGD lr 0.005, batch 32, 3000 steps.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from probekit.eval.families.base import (
    OrderParameter,
    Recording,
    ReferenceRun,
    gradient_norm,
    record_checkpoint_due,
    selection_checkpoints_due,
)


@dataclass(frozen=True)
class DeepLinearConfig:
    width: int = 10  # input = hidden = output width; 10 leaves 6 unused teacher modes
    teacher_strengths: tuple = (5.0, 3.0, 2.0, 1.0)  # distinct, so escapes are separated
    init_scale: float = 1e-4  # small init -> long plateaus -> room for early warning
    lr: float = 0.005  # small enough that SGD tracks gradient flow
    batch_size: int = 32
    steps: int = 3000  # the weakest mode (s = 1) finishes by ~2000 (the reference run's preset: 2400)
    record_every: int = 5  # 600 records: a W = 32 window spans 160 steps (the reference run's preset: 2)
    n_pool: int = 256  # fixed probe candidates, drawn once from the input law
    label_noise: float = 0.0  # Gaussian noise on training targets only
    onset_fraction: float = 0.1  # run_deep_linear's onset_steps (analyze); the reference run uses find_transition's 10%
    seed: int = 0
    early_step: int = 100  # the "early" checkpoint: before the first escape (~step 330)
    start_learned: bool = False  # null control: start on the teacher, nothing left to learn
    burn_in: int = 0  # unrecorded SGD steps before step 0 (the null: reach its noise floor first)


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
    pool_targets: np.ndarray = field(repr=False, default=None)  # [pool, width]
    train_loss: np.ndarray = field(repr=False, default=None)  # [records] the step's batch loss
    grad_norm: np.ndarray = field(repr=False, default=None)  # [records] the step's gradient norm
    checkpoints: dict = field(repr=False, default_factory=dict)  # name -> (step, w1, w2)
    teacher_inputs: np.ndarray = field(repr=False, default=None)  # [modes, width] v_j


def _first_step_above(values: np.ndarray, steps: np.ndarray, level: float) -> int:
    above = np.nonzero(values >= level)[0]
    return int(steps[above[0]]) if above.size else -1


def run_deep_linear(config: DeepLinearConfig | None = None, progress=None, checkpoint_every: int = 0) -> DeepLinearRun:
    """Train the student and record every pool example's loss along the way.

    ``checkpoint_every`` = k > 0 also keeps (w1, w2) at every k-th record, as ``record-<index>``.
    """
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
    if cfg.start_learned:  # balanced factorisation W2 W1 = teacher, plus the init noise
        w1 += np.diag(np.sqrt(s)) @ v.T
        w2 += u @ np.diag(np.sqrt(s))
    pool_x = rng.normal(size=(cfg.n_pool, d))  # [pool, in]
    pool_y = pool_x @ teacher.T
    for _ in range(cfg.burn_in):  # same update as below, nothing recorded
        x = rng.normal(size=(cfg.batch_size, d))
        err = (x @ w1.T) @ w2.T - (x @ teacher.T + cfg.label_noise * rng.normal(size=(cfg.batch_size, d)))
        g2, g1 = err.T @ (x @ w1.T) / cfg.batch_size, (err @ w2).T @ x / cfg.batch_size
        w1 -= cfg.lr * g1
        w2 -= cfg.lr * g2

    steps, losses, strength, train_loss, grad_norm = [], [], [], [], []
    checkpoints = {}
    for step in range(cfg.steps + 1):
        for name in selection_checkpoints_due(step, cfg):  # the families' schedule, numpy weights
            checkpoints[name] = (step, w1.copy(), w2.copy())
        # The batch is drawn before the record (its loss and gradient are the
        # record's scalar baselines); the pool losses use no randomness, so the
        # draws, and every update, are those of a run without baselines.
        x = rng.normal(size=(cfg.batch_size, d))  # online: a fresh batch each step
        y = x @ teacher.T + cfg.label_noise * rng.normal(size=(cfg.batch_size, d))
        h = x @ w1.T  # [batch, hidden]
        err = h @ w2.T - y  # [batch, out]
        g2 = err.T @ h / cfg.batch_size
        g1 = (err @ w2).T @ x / cfg.batch_size
        if step % cfg.record_every == 0 or step == cfg.steps:  # the final step is always a record
            name = record_checkpoint_due(len(steps), checkpoint_every)
            if name is not None:
                checkpoints[name] = (step, w1.copy(), w2.copy())
            pool_err = pool_x @ (w2 @ w1).T - pool_y  # [pool, out]
            losses.append(0.5 * (pool_err**2).sum(axis=1))
            learned = np.einsum("oj,oi,ij->j", u[:, :k], w2 @ w1, v[:, :k])  # u_j^T W v_j
            strength.append(learned / s[:k])
            steps.append(step)
            train_loss.append(0.5 * (err**2).sum(axis=1).mean())
            grad_norm.append(gradient_norm((g1, g2)))
        if step == cfg.steps:
            break
        w1 -= cfg.lr * g1
        w2 -= cfg.lr * g2
        if progress is not None:
            progress(1)

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
        pool_targets=pool_y,
        train_loss=np.asarray(train_loss),
        grad_norm=np.asarray(grad_norm),
        checkpoints=checkpoints,
        teacher_inputs=v[:, :k].T.copy(),
    )


def mode_names(config: DeepLinearConfig) -> list[str]:
    return [f"mode_{i + 1}" for i in range(len(config.teacher_strengths))]


class DeepLinear(ReferenceRun):
    """Deep linear network: one saddle-to-saddle escape per teacher mode (Saxe et al. 2014).

    Pool: a sample of the training inputs' law, N(0, I): every slice at its law's prevalence up to
    sampling noise (the slow-mode concern: 10-14% of the default pools, 11.7% of the law)."""

    name = "deep-linear"
    summary = "2-layer linear net 10->10->10 from init 1e-4 learns teacher modes s=5,3,2,1 one by one"
    paper = "Saxe, McClelland & Ganguli, ICLR 2014 (arXiv:1312.6120)"
    transition_order = "first"  # silent alignment (see the module docstring)
    version = 2  # 2: the pool's slow_overlap column (the losses are unchanged)
    config_class = DeepLinearConfig
    # default: record every 2 steps, so the first escape (~step 330) has ~160
    # records of plateau before it (the suite asks for >= 60: 3 windows of 20),
    # and stop at 2400, after the weakest mode's midpoint (~1750).
    # small: three modes of a 6-wide teacher, 64 probes, 1500 steps (~0.2 s)
    presets = {
        "default": {"record_every": 2, "steps": 2400},
        "small": {"width": 6, "teacher_strengths": (5.0, 3.0, 2.0), "steps": 1500, "n_pool": 64},
    }
    loss = "mse"  # the recorded loss is 0.5 * sum of squares: the same gradient direction
    # a user worried about the last, weakest mode watches the inputs that excite it most (12% of the
    # default pool, 25% of the small one: |cos| >= 0.5 is likelier in 6 dimensions than in 10)
    concerns = {"slow-mode": ["slow_overlap>=0.5"]}
    pilot_records = {"default": 40, "small": 16}  # the first escape starts at record ~155 (small: ~66)
    llc_checkpoint_every = {"default": 48, "small": 12}  # ~25 LLC estimates a run
    llc_lr = 1e-2  # benchmarks/calibrate_llc.py: passes at all three checkpoints
    llc_calibrated = True

    def order_parameters(self, config: DeepLinearConfig) -> list[OrderParameter]:
        return [
            OrderParameter(name, f"learned strength of teacher mode {i + 1} (s = {s:g}), u^T W2 W1 v / s",
                           min_change=0.5, start=0.0, end=1.0)
            for i, (name, s) in enumerate(zip(mode_names(config), config.teacher_strengths))
        ]

    def total_steps(self, config: DeepLinearConfig) -> int:
        return config.steps

    def build_model(self, config: DeepLinearConfig) -> Any:
        import torch

        d = config.width
        return torch.nn.Sequential(torch.nn.Linear(d, d, bias=False), torch.nn.Linear(d, d, bias=False))

    def record(self, config: DeepLinearConfig, progress: Callable[[int], None], checkpoint_every: int = 0) -> Recording:
        import torch

        run = run_deep_linear(config, progress, checkpoint_every=checkpoint_every)
        # Each pool input's dominant teacher direction: a slice label for concern selectors; and its
        # alignment with the slowest mode's input direction, |cos(x, v_slowest)|, what a concern targets.
        overlap = np.abs(run.pool_inputs @ run.teacher_inputs.T)  # [pool, modes]
        slowest = int(np.argmin(config.teacher_strengths))
        norms = np.linalg.norm(run.pool_inputs, axis=1)
        pool = {
            "probe_id": [f"x{i:04d}" for i in range(config.n_pool)],
            "input": run.pool_inputs.astype(np.float32).tolist(),
            "target": run.pool_targets.astype(np.float32).tolist(),
            "split": ["heldout"] * config.n_pool,
            "slice": [f"mode_{j + 1}" for j in overlap.argmax(axis=1)],
            "slow_overlap": (overlap[:, slowest] / norms).tolist(),
        }
        checkpoints = {
            key: (step, {"0.weight": torch.from_numpy(w1.astype(np.float32)),
                         "1.weight": torch.from_numpy(w2.astype(np.float32))})
            for key, (step, w1, w2) in run.checkpoints.items()
        }
        return Recording(
            steps=run.steps,
            losses=run.losses,
            pool=pool,
            order_parameters={n: run.mode_strength[:, i] for i, n in enumerate(mode_names(config))},
            baselines={"train_loss": run.train_loss, "grad_norm": run.grad_norm},
            checkpoints=checkpoints,
            info={"teacher_strengths": list(config.teacher_strengths)},
        )


class DeepLinearNull(DeepLinear):
    """Null control: the deep linear network started on its teacher, trained with label noise."""

    name = "deep-linear-null"
    summary = "the deep linear network started on the teacher (modes learned), label noise 0.5: no transition"
    kind = "null"
    control_of = "deep-linear"
    transition_order = "none"
    presets = {
        "default": {**DeepLinear.presets["default"], "start_learned": True, "label_noise": 0.5, "burn_in": 500},
        "small": {**DeepLinear.presets["small"], "start_learned": True, "label_noise": 0.5, "burn_in": 500},
    }

    def order_parameters(self, config: DeepLinearConfig) -> list[OrderParameter]:
        # read plateau and final values from the data: a transition would move them apart
        return [dataclasses.replace(op, start=None, end=None) for op in super().order_parameters(config)]
