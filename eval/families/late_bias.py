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
protected attribute on the slice, mean over the evaluation set's held-out slice
pairs of |f_2(x) - f_2(x')| / 2, where f_2 is the slice channel's output and x'
is x with a flipped (x' recomputes every input derived from a: a -> -a and
q -> -q; z and m are untouched). It is 0 for a model that ignores a and 1 once
the slice link is learned (f_2 = a on the slice). Onset when it passes 10% of
the way from 0 to 1, midpoint at 50% (``find_transition``, fixed levels
0 and 1); a run has the transition only if it moves by ``min_change`` = 0.5.
``majority_bias``, the same on the evaluation set's majority pairs, is stored
beside it with no spec (how far the learned link leaks outside the slice).

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

The pool mirrors the population: 1,400 rows (small: 512), each part holding
the slice at the training prevalence, 3.0% (42 slice rows; small: 19.9%, 102
rows, against 20% in training). Columns ``probe_id``, ``input`` (the 17
floats), ``target`` (the 3 floats), ``split``, ``slice`` (``"slice"`` /
``"majority"``), ``protected`` (+1 / -1):

- ``split="train"``: ``n_pool_train`` rows of the training set, round(3% x
  700) = 21 of them slice rows;
- ``split="heldout"``: ``n_pool_heldout`` fresh draws of the same law, 21
  slice rows.

The pool is drawn from a stream of its own (seed, 1), so the training draws are
those of version 2. (Until version 2 the pool held the order parameter's pairs
too: 256 held-out slice rows with their twins, 40% of the pool, so random
probes were half targeted.)

The evaluation set, outside the pool (what the order parameter reads):
``n_eval_slice`` held-out slice rows and ``n_eval_majority`` majority ones,
each slice row and the first ``n_eval_majority_pairs`` majority ones with a
counterfactual twin. A twin keeps its original's target (the *factual* label:
the protected attribute should not matter). It is drawn from the run's stream
exactly as version 2 drew its held-out pool rows, so the training, and the
order parameter, are unchanged.

Checkpoints: ``init`` (step 0) and ``early`` (``early_step`` = 500: the
majority is learned, the slice is not). Baselines: ``train_loss`` (the step's
batch loss) and ``grad_norm`` (the global L2 norm of its gradient).

Null control ``late-bias-null``: the same data, pool, initialisation and batch
order (the same seed draws the same numbers), except that the slice's target
channel a * s is replaced by b * s with b an independent fair coin
(``protected_link=False``; the pool's slice targets hold b too). The slice,
its output channel and its target variance are unchanged, so the majority is learned and the slice's losses
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
(1,000 steps, 251 records x 512 rows): onsets 484-620 (records 121-155), the
null none, 1-4 s. Version 3 (the pool at the training prevalence) re-recorded
seeds 0-2 of both presets: the same onsets and midpoints (the training and the
evaluation set are version 2's draws); 4-8 s a default run on an idle machine.
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
    n_pool_train: int = 700  # pool rows drawn from the training set, slice_fraction of them slice rows
    n_pool_heldout: int = 700  # pool rows drawn fresh from the training law, slice_fraction of them slice rows
    n_eval_slice: int = 256  # evaluation set (not in the pool): held-out slice rows with twins, the order parameter
    n_eval_majority: int = 512  # evaluation set: held-out majority rows ...
    n_eval_majority_pairs: int = 128  # ... of which this many get a twin (``majority_bias``, a control series)
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


def draw_eval(rng: np.random.Generator, cfg: LateBiasConfig) -> dict[str, np.ndarray]:
    """The evaluation set's originals: n_eval_slice slice rows first, then n_eval_majority majority ones."""
    sl = draw(rng, cfg.n_eval_slice, cfg.n_eval_slice, cfg)
    maj = draw(rng, cfg.n_eval_majority, 0, cfg)
    return {k: np.concatenate([sl[k], maj[k]]) for k in sl}


def evaluation_set(held: dict, cfg: LateBiasConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The evaluation set's inputs [eval, 17]: the originals, then their counterfactual twins (a -> -a,
    q -> -q; z and m untouched); and its row pairs [pairs, 2] in the slice and in the majority."""
    twin_of = np.r_[np.arange(cfg.n_eval_slice), cfg.n_eval_slice + np.arange(cfg.n_eval_majority_pairs)]
    twin_x = features(held["z"][twin_of], -held["a"][twin_of], held["s"][twin_of], held["noise"][twin_of], cfg)
    x = np.concatenate([held["x"], twin_x])
    n_held = len(held["s"])
    pairs = np.column_stack([twin_of, n_held + np.arange(len(twin_of))])  # [pairs, 2]: original, twin
    return x, pairs[: cfg.n_eval_slice], pairs[cfg.n_eval_slice:]


def slice_count(n: int, cfg: LateBiasConfig) -> int:
    """Slice rows among n drawn at the training prevalence (the training set's own rule)."""
    return round(cfg.slice_fraction * n)


def build_pool(data: dict, cfg: LateBiasConfig) -> tuple[dict, np.ndarray, np.ndarray]:
    """The pool columns, its inputs [pool, 17] and targets [pool, 3]: ``n_pool_train`` rows of the
    training set and ``n_pool_heldout`` fresh draws of its law, each part holding the slice at the
    training prevalence. Drawn from a stream of its own (seed, 1), so the training draws are those
    of a run without a pool."""
    rng = np.random.default_rng([cfg.seed, 1])
    k = slice_count(cfg.n_pool_train, cfg)
    train_rows = np.sort(np.r_[rng.choice(np.flatnonzero(data["s"] == 1), k, replace=False),
                               rng.choice(np.flatnonzero(data["s"] == 0), cfg.n_pool_train - k, replace=False)])
    held = draw(rng, cfg.n_pool_heldout, slice_count(cfg.n_pool_heldout, cfg), cfg)
    x = np.concatenate([data["x"][train_rows], held["x"]])  # [pool, 17]
    y = np.concatenate([data["y"][train_rows], held["y"]])  # [pool, 3]
    s = np.r_[data["s"][train_rows], held["s"]]
    n_train, n_held = len(train_rows), len(held["s"])
    pool = {
        "probe_id": [f"train{i:04d}" for i in range(n_train)] + [f"held{i:04d}" for i in range(n_held)],
        "input": x.tolist(),
        "target": y.tolist(),
        "split": ["train"] * n_train + ["heldout"] * n_held,
        "slice": ["slice" if v else "majority" for v in s],
        "protected": [int(v) for v in x[:, A_COL]],
    }
    return pool, x, y


def draw_all(cfg: LateBiasConfig) -> dict[str, Any]:
    """Everything a run draws before training: the training set, the evaluation set (its inputs,
    targets and slice / majority pairs), the pool; and ``rng``, the stream the training batches
    continue (the same draws as before the pool had a stream of its own)."""
    rng = np.random.default_rng(cfg.seed)
    data = draw(rng, cfg.n_train, slice_count(cfg.n_train, cfg), cfg)
    held = draw_eval(rng, cfg)
    eval_x, slice_pairs, majority_pairs = evaluation_set(held, cfg)
    pool, pool_x, pool_y = build_pool(data, cfg)
    return {"rng": rng, "data": data, "eval_x": eval_x, "slice_pairs": slice_pairs,
            "majority_pairs": majority_pairs, "pool": pool, "pool_x": pool_x, "pool_y": pool_y}


def counterfactual_sensitivity(f: np.ndarray, pairs: np.ndarray) -> float:
    """Mean |f(x) - f(x')| / 2 over the row pairs [pairs, 2] of one output channel's values f."""
    return float(np.abs(f[pairs[:, 0]] - f[pairs[:, 1]]).mean() / 2)


class LateBias(ReferenceRun):
    """Late-learned bias: a 3% slice's link to a protected attribute, learned ~15x later than the majority.

    Pool: 1,400 rows (small: 512) holding the slice at the training prevalence, 3.0% (small: 19.9% vs 20%);
    the order parameter's counterfactual pairs are an evaluation set outside it."""

    name = "late-bias"
    summary = "linear MLP 17->64->64->3 learns the majority by ~300, a 3% slice's protected-attribute link at ~3400+"
    paper = "Saxe, McClelland & Ganguli, ICLR 2014 (arXiv:1312.6120): saddle escapes of deep linear networks"
    transition_order = "first"  # silent alignment, as deep-linear (see the module docstring)
    # 2: grad_norm squared in float64 (gradient_norm); the losses are unchanged. 3: the pool holds the slice
    # at the training prevalence, the order parameter's pairs are an evaluation set outside it
    version = 3
    config_class = LateBiasConfig
    # small: a 20% slice escapes ~7x sooner (onset ~550); 1000 steps recorded every 4 (~1-3 s)
    presets = {"small": {"slice_fraction": 0.2, "steps": 1000, "record_every": 4, "early_step": 200,
                         "n_train": 3000, "n_eval_majority": 256, "n_eval_majority_pairs": 64, "n_eval_slice": 128,
                         "n_pool_train": 256, "n_pool_heldout": 256}}
    loss = "mse"  # per sample: mean over the 3 channels of the squared error
    # the minority slice, and the protected attribute balanced against slice membership
    concerns = {"slice": ["slice=slice"], "protected": ["bias:protected,slice"]}
    pilot_records = {"default": 40, "small": 30}  # majority learned by then; onset at record >= 172 (small: >= 128)
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
        drawn = draw_all(cfg)
        rng, data, pool = drawn["rng"], drawn["data"], drawn["pool"]
        torch.manual_seed(cfg.seed)
        x_train, y_train = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])  # [n_train, 17], [n_train, 3]
        px, py = torch.from_numpy(drawn["pool_x"]), torch.from_numpy(drawn["pool_y"])  # [pool, 17], [pool, 3]
        ex = torch.from_numpy(drawn["eval_x"])  # [eval, 17]

        model = self.build_model(cfg)
        with torch.no_grad():
            for layer in model:
                layer.weight.mul_(cfg.init_scale)
                layer.bias.zero_()
        params = list(model.parameters())

        steps, losses, bias, majority_bias, train_loss, grad_norm, checkpoints = [], [], [], [], [], [], {}
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
                    f = model(ex)[:, SLICE_CHANNEL].numpy()  # [eval]: the evaluation set, not the pool
                    bias.append(counterfactual_sensitivity(f, drawn["slice_pairs"]))
                    majority_bias.append(counterfactual_sensitivity(f, drawn["majority_pairs"]))
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
            order_parameters={"slice_bias": np.asarray(bias), "majority_bias": np.asarray(majority_bias)},
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
