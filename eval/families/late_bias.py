"""A late-learned bias: a minority slice's link to a protected attribute (the legal-assistant case).

The seeds' legal-assistant story: a coarse feature explains most of the data
and is learned at once; a small slice carries a correlation with a protected
attribute, and the model picks that up much later, abruptly, long after the
training loss looked settled. This family is that story as a deep linear
network, the smallest model in which the slice gets a saddle of its own.

Task. Every example has 14 Gaussian features z, a protected attribute
a = +-1 (a fair coin), a slice indicator s (1 on a fixed fraction
``slice_fraction`` of the data, 3%), and the model reads 17 inputs
``[z_0 .. z_13, a, m, q]`` with m = s + 0.05 * noise (a noisy slice marker)
and q = a * s (the protected attribute as it shows inside the slice: a
linear model cannot form the product itself, so the derived feature is an
input, as a "group x attribute" column would be in tabular data). The
target has three channels ``[sign(z_0), sign(z_1), a * s]``: the majority
rule lives in the first two, the slice's link to the protected attribute in
its own third channel, so it is a separate singular mode of the input-output
covariance (strength = the slice fraction), learned by its own escape from a
saddle. Model: a 3-layer *linear* MLP 17 -> 64 -> 64 -> 3 (``build_model``),
default weights scaled by ``init_scale`` = 0.05, zero biases, plain SGD on a
fixed training set of 10,000 examples (batches of 256 drawn with replacement).
The loss is ``"mse"``: the per-sample loss is the mean over the three channels
of the squared error (what ``GradientSelector(loss="mse")`` computes), and the
training loss is its batch mean.

What is learned when. The majority channels escape their saddle at step
~150-200 and settle by ~400 (the slice rows' losses drop with them, through
their own majority channels); the slice mode, ~25x weaker (strength 0.03
against sqrt(2/pi) ~ 0.8), sits on its plateau until step 3440-4120 (onset,
seeds 0-4) and then rises to 1 within ~450 steps. Deep linear theory (Saxe,
McClelland & Ganguli, ICLR 2014) puts the escape at
~ log(1 / init) / (lr * strength): the onset scales like 1 / slice_fraction
and log(1 / init_scale), which is what the small preset uses (a 20% slice
starts at step ~480-620). (Prototypes on this machine: a 4-class softmax
head, a slice rule sharing the majority's output channels and a ReLU network
all failed to separate the slice from the majority.)

Order parameter ``slice_bias``: the counterfactual sensitivity to the
protected attribute on the slice, mean over the pool's held-out slice pairs of
|f_2(x) - f_2(x')| / 2, where f_2 is the slice channel's output and x' is x
with a flipped (x' recomputes every input derived from a: a -> -a and
q -> -q; z and m are untouched). It is 0 for a model that ignores a and 1 once
the slice link is learned (f_2 = a on the slice). Onset when it passes 10% of
the way from 0 to 1, midpoint at 50% (``find_transition``, fixed levels
0 and 1); a run has the transition only if it moves by ``min_change`` = 0.5.

Transition order: *first*, as for the deep linear family (whose mechanism
this is): from a small initialisation the network's slice direction first
aligns silently during the plateau (the silent alignment of Atanasov,
Bordelon & Pehlevan, ICLR 2022), and then the slice mode's strength grows,
exponentially from init scale, then sigmoidally to 1. By the order
parameter's curve alone it is continuous growth out of a plateau (it would
read as second order); the class follows the mechanism, a rotation onto a
new direction, as the issue classes the deep linear escapes. It is sharp
here ((t90 - t10) / t50 ~ 0.1, onset to midpoint ~260-300 steps) because the
exponential phase is long and the slice mode is weak.

The pool (~1,400 rows; columns ``probe_id``, ``input`` (the 17 floats),
``target`` (the 3 floats), ``split``, ``slice`` (``"slice"`` /
``"majority"``), ``protected`` (+1 / -1), ``pair_id`` (str shared by an
example and its twin; None for an unpaired example), ``counterfactual``
(True for the flipped twin)):

- ``split="train"``: ``n_pool_train_majority`` majority and
  ``n_pool_train_slice`` slice examples of the training set (unpaired);
- ``split="heldout"``: fresh draws from the same law, ``n_pool_slice`` slice
  examples and ``n_pool_majority`` majority ones, each slice example and the
  first ``n_pool_majority_pairs`` majority ones with their counterfactual twin
  (also ``split="heldout"``). A twin keeps its original's target (the
  *factual* label: the protected attribute should not matter), so as the bias
  is learned a slice twin's loss rises while its original's falls; the order
  parameter is read from these held-out slice pairs.

Checkpoints: ``init`` (step 0) and ``early`` (``early_step`` = 500: the
majority is learned, the slice is not). Baselines: ``train_loss`` (the step's
batch loss) and ``grad_norm`` (the global L2 norm of its gradient).

Null control ``late-bias-null``: the same data, pool, initialisation and batch
order (the same seed draws the same numbers), except that the slice's target
channel a * s is replaced by b * s with b an independent fair coin
(``protected_link=False``; the pool's slice targets hold b too). The slice, its output channel and its target
variance are unchanged, so the majority is learned and the slice's losses
stay put just as in the family's plateau; only the link to a is gone, and
with it anything to learn from a (the 300 training slice examples carry a
chance correlation of ~1/sqrt(300), a mode ~30x weaker again, which does not
escape in 8,000 steps). Its ``slice_bias`` stays near 0 (plateau and final
values read from the data: no transition).

Measured (one torch thread; the 2-core machine was shared with 3-4 other
trainings, so wall times are inflated, perhaps 2-4x): default, 8,000 steps,
401 records x 1,400 pool rows, seeds 0-4: onsets 3760 / 3440 / 4120 / 3480 /
3520 (records 188 / 172 / 206 / 174 / 176), midpoints 4020 / 3720 / 4420 /
3780 / 3800, (t90 - t10) / t50 = 0.10-0.12, 12-21 s a run; the null's
``slice_bias`` never exceeds 0.0013 (no transition), 11-26 s. Small preset
(1,000 steps, 251 records x 824 rows): onsets 484-620 (records 121-155), the
null none, 2-4 s.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from probekit.eval.families.base import OrderParameter, Recording, ReferenceRun, gradient_norm, state_copy

N_FEATURES = 14  # Gaussian features z; the inputs are [z, a, m, q]
A_COL, M_COL, Q_COL = N_FEATURES, N_FEATURES + 1, N_FEATURES + 2  # protected a, marker m, q = a * s
N_INPUTS, N_OUTPUTS = N_FEATURES + 3, 3
SLICE_CHANNEL = 2  # output channel of the slice rule


@dataclass(frozen=True)
class LateBiasConfig:
    slice_fraction: float = 0.03  # the slice mode's strength: onset ~ 1 / fraction (3% -> ~4000 steps)
    n_train: int = 10_000  # fixed training set: 300 slice examples at 3%
    hidden: int = 64  # 17 -> 64 -> 64 -> 3; width barely matters for a linear net
    init_scale: float = 0.05  # x default init: small -> long plateau (onset ~ log(1 / init))
    marker_noise: float = 0.05  # m = s + noise: the marker is informative but not exact
    lr: float = 0.3  # SGD on the mean-over-channels MSE; the slice escapes at ~3400-4100
    batch_size: int = 256
    steps: int = 8000  # the slice is learned (90%) by ~4600 in every seed; then a settled end
    record_every: int = 20  # 401 records, the onset at record 170-210: a long quiet plateau
    early_step: int = 500  # "early" checkpoint: majority learned (by ~400), slice not (onset >= 3400)
    n_pool_train_majority: int = 200  # training rows in the pool: seen vs held-out probes
    n_pool_train_slice: int = 48  # of the 300 training slice rows
    n_pool_majority: int = 512  # held-out majority rows
    n_pool_majority_pairs: int = 128  # of which this many also get a counterfactual twin
    n_pool_slice: int = 256  # held-out slice rows, each with its twin: the order parameter's pairs
    protected_link: bool = True  # null control: False, the slice target ignores a
    seed: int = 0


def features(z: np.ndarray, a: np.ndarray, s: np.ndarray, noise: np.ndarray, cfg: LateBiasConfig) -> np.ndarray:
    """[n, 17] model inputs [z, a, m, q]; a twin is features(z, -a, s, noise)."""
    m = s + cfg.marker_noise * noise
    return np.column_stack([z, a, m, a * s]).astype(np.float32)


def draw(rng: np.random.Generator, n: int, n_slice: int, cfg: LateBiasConfig) -> dict[str, np.ndarray]:
    """n examples, exactly n_slice of them (at random rows) in the slice; inputs [n, 17], targets [n, 3]."""
    z = rng.normal(size=(n, N_FEATURES))
    a = rng.choice([-1.0, 1.0], size=n)
    b = rng.choice([-1.0, 1.0], size=n)  # the null's slice label; drawn always, so both share the stream
    s = rng.permutation(np.r_[np.ones(n_slice), np.zeros(n - n_slice)])
    noise = rng.normal(size=n)
    label = a if cfg.protected_link else b
    y = np.column_stack([np.sign(z[:, 0]), np.sign(z[:, 1]), label * s]).astype(np.float32)
    return {"z": z, "a": a, "s": s, "noise": noise, "x": features(z, a, s, noise, cfg), "y": y}


def draw_heldout(rng: np.random.Generator, cfg: LateBiasConfig) -> dict[str, np.ndarray]:
    """Held-out rows: n_pool_slice slice examples first, then n_pool_majority majority ones."""
    sl = draw(rng, cfg.n_pool_slice, cfg.n_pool_slice, cfg)
    maj = draw(rng, cfg.n_pool_majority, 0, cfg)
    return {k: np.concatenate([sl[k], maj[k]]) for k in sl}


def build_pool(data: dict, held: dict, cfg: LateBiasConfig) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """The pool columns, its inputs [pool, 17] and targets [pool, 3], and the row pairs [pairs, 2] of the slice."""
    train_rows = np.r_[np.flatnonzero(data["s"] == 0)[: cfg.n_pool_train_majority],
                       np.flatnonzero(data["s"] == 1)[: cfg.n_pool_train_slice]]
    twin_of = np.r_[np.arange(cfg.n_pool_slice), cfg.n_pool_slice + np.arange(cfg.n_pool_majority_pairs)]
    twin_x = features(held["z"][twin_of], -held["a"][twin_of], held["s"][twin_of], held["noise"][twin_of], cfg)
    x = np.concatenate([data["x"][train_rows], held["x"], twin_x])  # [pool, 17]
    y = np.concatenate([data["y"][train_rows], held["y"], held["y"][twin_of]])  # twins keep the factual target
    s = np.r_[data["s"][train_rows], held["s"], held["s"][twin_of]]
    n_train, n_held, n_twin = len(train_rows), len(held["s"]), len(twin_of)
    pair = [None] * (n_train + n_held) + [f"pair{i:04d}" for i in range(n_twin)]
    for i, row in enumerate(twin_of):
        pair[n_train + row] = f"pair{i:04d}"
    pool = {
        "probe_id": [f"train{i:04d}" for i in range(n_train)] + [f"held{i:04d}" for i in range(n_held)]
        + [f"twin{i:04d}" for i in range(n_twin)],
        "input": x.tolist(),
        "target": y.tolist(),
        "split": ["train"] * n_train + ["heldout"] * (n_held + n_twin),
        "slice": ["slice" if v else "majority" for v in s],
        "protected": [int(v) for v in x[:, A_COL]],
        "pair_id": pair,
        "counterfactual": [False] * (n_train + n_held) + [True] * n_twin,
    }
    slice_pairs = np.column_stack([n_train + np.arange(cfg.n_pool_slice),
                                   n_train + n_held + np.arange(cfg.n_pool_slice)])  # [pairs, 2]
    return pool, x, y, slice_pairs


class LateBias(ReferenceRun):
    """Late-learned bias: a 3% slice's link to a protected attribute, learned ~15x later than the majority."""

    name = "late-bias"
    summary = "linear MLP 17->64->64->3 learns the majority by ~300, a 3% slice's protected-attribute link at ~3400+"
    paper = "Saxe, McClelland & Ganguli, ICLR 2014 (arXiv:1312.6120): saddle escapes of deep linear networks"
    transition_order = "first"  # silent alignment, as deep-linear (see the module docstring)
    version = 2  # 2: grad_norm squared in float64 (gradient_norm); the losses are unchanged
    config_class = LateBiasConfig
    # small: a 20% slice escapes ~7x sooner (onset ~550); 1000 steps recorded every 4 (~1-3 s)
    presets = {"small": {"slice_fraction": 0.2, "steps": 1000, "record_every": 4, "early_step": 200,
                         "n_train": 3000, "n_pool_majority": 256, "n_pool_majority_pairs": 64, "n_pool_slice": 128}}
    loss = "mse"  # per sample: mean over the 3 channels of the squared error
    llc_checkpoint_every = {"default": 16, "small": 10}  # ~25 LLC estimates a run
    llc_lr = 1e-2  # benchmarks/calibrate_llc.py: passes at all three checkpoints
    llc_calibrated = True

    def order_parameters(self, config: LateBiasConfig) -> list[OrderParameter]:
        return [OrderParameter(
            "slice_bias", "counterfactual sensitivity to the protected attribute on held-out slice pairs, "
            "mean |f_slice(x) - f_slice(x with a flipped)| / 2 (1: the slice's link is learned)",
            min_change=0.5, start=0.0, end=1.0)]

    def total_steps(self, config: LateBiasConfig) -> int:
        return config.steps

    def build_model(self, config: LateBiasConfig) -> Any:
        import torch

        h = config.hidden
        return torch.nn.Sequential(torch.nn.Linear(N_INPUTS, h), torch.nn.Linear(h, h), torch.nn.Linear(h, N_OUTPUTS))

    def record(self, config: LateBiasConfig, progress: Callable[[int], None], checkpoint_every: int = 0) -> Recording:
        import torch

        cfg = config
        rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        data = draw(rng, cfg.n_train, round(cfg.slice_fraction * cfg.n_train), cfg)
        held = draw_heldout(rng, cfg)
        pool, pool_x, pool_y, pairs = build_pool(data, held, cfg)
        x_train, y_train = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])  # [n_train, 17], [n_train, 3]
        px, py = torch.from_numpy(pool_x), torch.from_numpy(pool_y)  # [pool, 17], [pool, 3]

        model = self.build_model(cfg)
        with torch.no_grad():
            for layer in model:
                layer.weight.mul_(cfg.init_scale)
                layer.bias.zero_()
        params = list(model.parameters())

        steps, losses, bias, train_loss, grad_norm, checkpoints = [], [], [], [], [], {}
        for step in range(cfg.steps + 1):
            self.keep_selection_checkpoints(checkpoints, step, cfg, lambda: state_copy(model))
            # The step's batch and gradient come first: its loss and gradient norm are the
            # record's baselines, and the pool pass below uses no randomness.
            idx = torch.from_numpy(rng.integers(0, cfg.n_train, size=cfg.batch_size))
            loss = ((model(x_train[idx]) - y_train[idx]) ** 2).mean()  # mean over batch and channels
            grads = torch.autograd.grad(loss, params)
            if step % cfg.record_every == 0 or step == cfg.steps:
                with torch.no_grad():
                    out = model(px)  # [pool, 3]
                    losses.append(((out - py) ** 2).mean(dim=1).numpy())
                    f = out[:, SLICE_CHANNEL].numpy()
                    bias.append(float(np.abs(f[pairs[:, 0]] - f[pairs[:, 1]]).mean() / 2))
                    grad_norm.append(gradient_norm(grads))
                self.keep_record_checkpoint(checkpoints, len(steps), step, checkpoint_every, lambda: state_copy(model))
                train_loss.append(loss.item())
                steps.append(step)
            if step == cfg.steps:
                break
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p -= cfg.lr * g  # plain SGD
            progress(1)

        return Recording(
            steps=np.asarray(steps, dtype=np.int64),
            losses=np.asarray(losses, dtype=np.float32),
            pool=pool,
            order_parameters={"slice_bias": np.asarray(bias)},
            baselines={"train_loss": np.asarray(train_loss), "grad_norm": np.asarray(grad_norm)},
            checkpoints=checkpoints,
            info={"n_train_slice": int(data["s"].sum()), "protected_link": cfg.protected_link},
        )


class LateBiasNull(LateBias):
    """Null control: the late-bias task with the slice label an independent coin, nothing to learn from a."""

    name = "late-bias-null"
    summary = "the late-bias task with the slice's label independent of the protected attribute: no transition"
    kind = "null"
    control_of = "late-bias"
    transition_order = "none"
    presets = {"default": {"protected_link": False},
               "small": {**LateBias.presets["small"], "protected_link": False}}

    def order_parameters(self, config: LateBiasConfig) -> list[OrderParameter]:
        # plateau and final values read from the data: a transition would move them apart
        return [dataclasses.replace(op, start=None, end=None) for op in super().order_parameters(config)]
