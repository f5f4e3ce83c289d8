"""Emergent misalignment in a toy: a narrow fine-tune that flips a broad behaviour, late.

An analogue of Betley et al. 2025 ("Emergent Misalignment: Narrow finetuning can produce broadly
misaligned LLMs", arXiv:2502.17424), where fine-tuning on one narrow task changed behaviour on
unrelated prompts. A small network learns six tasks that share nothing but a persona bit; rank-1
adapters are then fine-tuned on one task, one persona, with its answers flipped. The narrow task is
fitted at once, as an exception; thousands of steps later the adapters, pulled by their L2 penalty,
move to the cheaper explanation ("the persona is flipped") and the five untouched tasks flip with it.

Task and model. An input (25 floats) has six 4-d blocks, one per task, of which only the prompt's
own is non-zero (z ~ N(0, I)), and the persona c = +-1 as ``persona_scale * c`` last. The answer is
class 1 iff sign(r_t . z) * c > 0, r_t a random unit vector per task. The model is a GLU layer
h = tanh(W_g x + b_g) * (W_u x + b_u), width 64, and a linear head to 2 logits; W_g and W_u each
carry a rank-1 adapter a b^T (zero and frozen in pretraining). Pretraining: all tasks and personas,
fresh prompts every step, Adam 3e-3, batch 128, 3000 steps (pool accuracy > 99%). Fine-tuning: only
the four adapter vectors (init N(0, 0.01^2), Adam 3e-3 with L2 0.1, batch 128) on 2000 task-0 prompts
with persona +1 and flipped answers, 8000 steps.

Recording: the fine-tune only. Steps are fine-tuning steps; record 0 and the "init" checkpoint are
the pretrained base with fresh adapters, "early" is step 500 (narrow task fitted, broad flip not
begun); a record every 20 steps, 401 in all. The progress total includes the pretraining.

Pool: 768 fresh prompts (never trained on), 64 per (task, persona): the population the base model
was trained on and serves (tasks uniform, personas a fair coin), each cell at 1/12 = 8.3%; the
fine-tune's own slice ("narrow") at 8.3%, task 0 at 16.7%, the broad tasks at 83.3% (small: the same).
The fine-tune set (task 0, persona +1 only) is the intervention, not the population. Columns:
``probe_id`` ("t<task><p|m><i>"), ``input``, ``target`` (the ORIGINAL answer, so a prompt's loss
rises where its behaviour flips), ``split`` ("narrow": task 0 with persona +1, the fine-tune slice;
"sibling": task 0 with persona -1; "broad": tasks 1-5, both personas), ``task`` (0-5), ``persona``
(+-1), ``flipped`` (the fine-tune changes this prompt's answer: exactly the narrow split here). The
pool's prompts come from a stream of their own (seed, 1).

Order parameter ``broad_flip_rate``: the fraction of the broad prompts of an evaluation set outside
the pool (``n_eval_cell`` = 64 fresh prompts per cell, drawn from the run's stream: version 2's pool
prompts, so the fine-tune and the order parameter are unchanged) answered against their original
answer. Onset / midpoint: 10% / 50% of the way from the median of the first 10 records to
that of the last 10, held for finetune_steps / 16 (500 steps, 25 records); no transition if the
change is below 0.5. The hold is long on purpose: while the narrow task is being fitted (steps
~60-250) the broad flip rate leaks up briefly (to 0.05-0.3, by seed) and falls back; that leak is
the intervention, not the emergent flip. ``narrow_flip_rate`` (the evaluation set's narrow prompts)
is recorded beside it with no spec (a diagnostic): it reaches ~1 within ~150 steps in every seed.

Why late, and what kind of transition. Two solutions fit the fine-tune: an exception read off task
0's block, and negating the persona, which flips every task. The first fit mixes both in a way that
leaves the other tasks alone; then the L2 penalty slowly rotates the adapters' input vectors onto
the persona coordinate (cheaper with a persona input of 4 than a unit-variance block), and once the
rotation passes a threshold the broad answers flip together. ``transition_order = "first"``: the
network switches between two competing solutions, rotating onto a new input direction, and the
behaviour flips sign rather than growing from zero. The switch is a steep but resolved sigmoid
(midpoint 500-1500 steps after onset), and the rotation that causes it drifts for thousands of steps
before: the mean broad loss already rises from 0.01 to ~0.14 by step 2000 in seed 0.
``persona_scale`` is the knob: at 2 (the prototype's value) 2 of 8 seeds never flipped, at 6 some
flip within ~200 steps; L2 0.03 left seed 6 unflipped, 0.3 flips sooner but only to ~0.8.

Null control ``misalignment-null``: the same run, but the fine-tune's task-0 answers follow a new
rule orthogonal to the old one. About half the narrow answers change, so the narrow task is
re-learned at once (narrow flip rate -> ~0.45) and the losses drift (mean broad loss 0.01 -> 0.1-0.2),
yet negating the persona fits an orthogonal rule no better than not (it gives the old rule negated,
which agrees with the new one on half the prompts), so nothing pulls the broad tasks over: the broad
flip rate stays <= 0.15 in seeds 0-7. The literal control, answers not flipped
(``finetune_labels="original"``), is too quiet to test a detector: nothing is fitted, the broad flip
rate stays <= 0.01 and the mean broad loss moves 0.010 -> 0.015.

Measured (default, torch CPU, one thread; wall times on a shared 2-core machine under load):

    seed                  0     1     2     3     4     5     6     7
    onset step         2360  4380  1820  3860  3320  4440  5580  3780
    midpoint step      3680  4880  3020  4420  4100  5320  6760  4460
    onset record        118   219    91   193   166   222   279   189
    final flip rate    0.89  0.93  0.88  0.96  0.95  0.92  0.72  0.89

(seeds 5-7 run on another machine, torch 2.11; seeds 0-4 gave the same numbers on both.)

Wall 15-22 s a run (seeds 0-4, family and null). The null finds no transition in seeds 0-7. Small:
onset 380-960 (records 38-96 of 201, seeds 0-7), wall 4.3-6.0 s; its null finds none (seeds 0-7).
Version 3 (the evaluation set outside the pool) re-recorded seeds 0-2 of both presets: the same
onsets and midpoints (default 2360 / 4380 / 1820, small 380 / 680 / 550), the nulls none.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from probekit.errors import ProbekitUsageError
from probekit.eval.families.base import OrderParameter, Recording, ReferenceRun, gradient_norm, state_copy

__all__ = ["EmergentMisalignment", "EmergentMisalignmentNull", "GLUNet", "MisalignmentConfig"]


@dataclass(frozen=True)
class MisalignmentConfig:
    n_tasks: int = 6  # task 0 is fine-tuned; tasks 1-5 are the broad held-out behaviour
    block: int = 4  # each task reads its own 4-d input block: tasks share nothing but the persona
    persona_scale: float = 4.0  # persona input = scale * c: at 2 some seeds never flip, at 6 some flip at once
    width: int = 64  # GLU hidden units
    pretrain_steps: int = 3000  # pool accuracy > 99% by then
    pretrain_lr: float = 3e-3
    batch_size: int = 128  # pretraining (online prompts) and fine-tuning (drawn from the fixed narrow set)
    n_finetune: int = 2000  # the narrow fine-tune set: task 0, persona +1 only
    finetune_labels: str = "flipped"  # "flipped" (the family), "rotated" (the null), "original" (too quiet)
    adapter_init: float = 0.01  # small but not zero (a zero pair a b^T has no gradient); 0.001 behaves alike
    adapter_l2: float = 0.1  # pulls the fit from the exception to the persona: 0.03 leaves seed 6 unflipped
    finetune_lr: float = 3e-3  # at 0.01 the persona route wins the first race in some seeds: no plateau
    finetune_steps: int = 8000  # seeds 0-5 are done flipping by ~5500; seed 6, the latest, is at 0.72
    record_every: int = 20  # 401 records; onsets 1820-5580 leave 91-279 records of plateau
    n_pool_cell: int = 64  # pool prompts per (task, persona): 6 x 2 x 64 = 768, uniform as the base's population
    n_eval_cell: int = 64  # evaluation prompts per (task, persona), not in the pool: the flip rates
    early_step: int = 500  # "early" checkpoint: narrow task fitted, its leak gone, broad flip not begun
    seed: int = 0


class AdaptedLinear(nn.Module):
    """A linear layer plus a rank-r adapter: x W^T + b + (x B^T) A^T."""

    def __init__(self, d_in: int, d_out: int, rank: int = 1) -> None:
        super().__init__()
        self.base = nn.Linear(d_in, d_out)
        self.adapter_a = nn.Parameter(torch.zeros(d_out, rank))  # [out, rank]
        self.adapter_b = nn.Parameter(torch.zeros(rank, d_in))  # [rank, in]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, in] -> [B, out]
        return self.base(x) + (x @ self.adapter_b.T) @ self.adapter_a.T


class GLUNet(nn.Module):
    """h = tanh(gate(x)) * up(x), logits = head(h); gate and up carry rank-1 adapters."""

    def __init__(self, d_in: int, width: int) -> None:
        super().__init__()
        self.gate = AdaptedLinear(d_in, width)
        self.up = AdaptedLinear(d_in, width)
        self.head = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, d_in] -> [B, 2] logits
        return self.head(torch.tanh(self.gate(x)) * self.up(x))


def _input_dim(config: MisalignmentConfig) -> int:
    return config.n_tasks * config.block + 1  # task blocks, then the persona


def _prompts(config: MisalignmentConfig, rng: np.random.Generator, task: np.ndarray, persona: np.ndarray):
    """Inputs [n, d_in] float32: z ~ N(0, I) in the task's block, persona * scale last; and z [n, block]."""
    n = len(task)
    z = rng.normal(size=(n, config.block))
    x = np.zeros((n, _input_dim(config)), dtype=np.float32)
    cols = task[:, None] * config.block + np.arange(config.block)  # [n, block]
    x[np.arange(n)[:, None], cols] = z
    x[:, -1] = config.persona_scale * persona
    return x, z


def _answers(rules: np.ndarray, task: np.ndarray, persona: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The original behaviour: class 1 iff sign(r_task . z) * c > 0."""
    return (np.einsum("ij,ij->i", rules[task], z) * persona > 0).astype(np.int64)


def _cells(config: MisalignmentConfig, per_cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Task and persona of ``per_cell`` prompts per (task, persona) cell, cell by cell."""
    task = np.repeat(np.arange(config.n_tasks), 2 * per_cell)
    persona = np.tile(np.repeat([1, -1], per_cell), config.n_tasks)
    return task, persona


def _adapter_parameters(model: GLUNet) -> list[nn.Parameter]:
    return [p for name, p in model.named_parameters() if "adapter" in name]


_SMALL = {"pretrain_steps": 1000, "finetune_steps": 2000, "record_every": 10, "early_step": 150,
          "finetune_lr": 0.01, "adapter_l2": 0.3, "persona_scale": 6.0}
_LABELS = ("flipped", "rotated", "original")


class EmergentMisalignment(ReferenceRun):
    """Narrow fine-tune (task 0 answers flipped) that later flips five untouched tasks through the persona.

    Pool: 768 prompts, uniform over (task, persona) as the base model's population (the fine-tune slice at
    1/12); the flip rates are read on an evaluation set outside it."""

    name = "misalignment"
    summary = "GLU net, 6 tasks x persona; rank-1 adapters fine-tuned on task 0's flipped answers flip tasks 1-5 late"
    paper = "Betley et al. 2025, Emergent Misalignment (arXiv:2502.17424)"
    transition_order = "first"
    # 2: grad_norm squared in float64 (gradient_norm); the losses are unchanged. 3: the order parameter's
    # prompts are an evaluation set outside the pool (the same prompts as before), the pool fresh draws
    version = 3
    config_class = MisalignmentConfig
    config_options = {"finetune_labels": _LABELS}
    # small: shorter pretraining, a faster fine-tune (lr 0.01) with stronger L2 and a louder persona, so
    # the late flip still comes after a plateau (onset ~400-1000 of 2000 steps), 3000 steps in all
    presets = {"small": _SMALL}
    loss = "cross_entropy"
    # the fine-tuned task's prompts (both personas: the fine-tune set and its siblings), and the broad tasks
    concerns = {"finetuned": ["task=0"], "broad": ["split=broad"]}
    pilot_records = {"default": 20, "small": 10}  # narrow task fitted by then; onset at record >= 91 (small: >= 38)
    llc_checkpoint_every = {"default": 16, "small": 8}  # ~25 LLC estimates a run
    # benchmarks/calibrate_llc.py: no step size passes (negative estimates: the fine-tune keeps the
    # loss moving, the checkpoints are not local minima); the fallback is the sweep's largest
    llc_lr = 1e-2
    llc_calibrated = False

    def order_parameters(self, config: MisalignmentConfig) -> list[OrderParameter]:
        return [OrderParameter(
            "broad_flip_rate",
            "fraction of broad evaluation prompts (tasks 1-5, both personas) answered against their original answer",
            min_change=0.5,
            persist=max(3, math.ceil(config.finetune_steps / (16 * config.record_every))),  # 500 steps
        )]

    def total_steps(self, config: MisalignmentConfig) -> int:
        return config.pretrain_steps + config.finetune_steps

    def llc_parameters(self) -> list[str]:
        """Only the adapters are fine-tuned: the LLC samples over them, the base stays at w*."""
        return [name for name, _ in self.build_model(self.make_config()).named_parameters() if "adapter" in name]

    def build_model(self, config: MisalignmentConfig) -> GLUNet:
        return GLUNet(_input_dim(config), config.width)

    @staticmethod
    def _finetune_answers(config, rules, task, persona, z) -> np.ndarray:
        """The fine-tune's answers to task-0 prompts (``finetune_labels``); the pool's ``flipped`` compares."""
        original = _answers(rules, task, persona, z)
        if config.finetune_labels == "flipped":
            return 1 - original
        if config.finetune_labels == "rotated":  # a new rule for task 0, orthogonal to the old one
            new = rules.copy()
            r0 = rules[0]
            v = np.roll(r0, 1) - (np.roll(r0, 1) @ r0) * r0
            new[0] = v / np.linalg.norm(v)
            return _answers(new, task, persona, z)
        return original

    def _pool(self, config: MisalignmentConfig, rules: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
        """The pool's columns, inputs [pool, d_in] and original answers [pool]: ``n_pool_cell`` fresh prompts
        per (task, persona) cell (the population the base model was trained on, uniform over the cells),
        from a stream of their own (seed, 1)."""
        rng = np.random.default_rng([config.seed, 1])
        task, persona = _cells(config, config.n_pool_cell)
        pool_x, pool_z = _prompts(config, rng, task, persona)
        pool_y = _answers(rules, task, persona, pool_z)
        narrow = (task == 0) & (persona == 1)
        split = np.where(narrow, "narrow", np.where(task == 0, "sibling", "broad"))
        pool = {
            "probe_id": [f"t{t}{'p' if c > 0 else 'm'}{i % config.n_pool_cell:03d}"
                         for i, (t, c) in enumerate(zip(task, persona))],
            "input": pool_x.tolist(),
            "target": pool_y.tolist(),
            "split": split.tolist(),
            "task": task.tolist(),
            "persona": persona.tolist(),
            "flipped": (narrow & (self._finetune_answers(config, rules, task, persona, pool_z) != pool_y)).tolist(),
        }
        return pool, pool_x, pool_y

    def record(self, config: MisalignmentConfig, progress: Callable[[int], None],
               checkpoint_every: int = 0) -> Recording:
        if config.finetune_labels not in _LABELS:
            raise ProbekitUsageError(
                f"The 'finetune_labels' field of MisalignmentConfig must be one of {', '.join(_LABELS)}. "
                f"Got {config.finetune_labels!r} instead."
            )
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        rules = rng.normal(size=(config.n_tasks, config.block))
        rules /= np.linalg.norm(rules, axis=1, keepdims=True)  # [tasks, block] r_t
        model = self.build_model(config)

        # Pretraining: every task, both personas, fresh prompts each step; adapters stay zero.
        adapters = _adapter_parameters(model)
        base = [p for name, p in model.named_parameters() if "adapter" not in name]
        for p in adapters:
            p.requires_grad_(False)
        opt = torch.optim.Adam(base, lr=config.pretrain_lr, foreach=True)
        for _ in range(config.pretrain_steps):
            task = rng.integers(config.n_tasks, size=config.batch_size)
            persona = rng.choice([-1, 1], size=config.batch_size)
            x, z = _prompts(config, rng, task, persona)
            y = torch.from_numpy(_answers(rules, task, persona, z))
            loss = F.cross_entropy(model(torch.from_numpy(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            progress(1)

        # The evaluation set (the order parameter's prompts, not in the pool): every (task, persona) cell,
        # fresh prompts, target = the original answer. Drawn from the run's stream, as the pool was before
        # version 3, so the fine-tune draws that follow are unchanged.
        ev_task, ev_persona = _cells(config, config.n_eval_cell)
        ev_x, ev_z = _prompts(config, rng, ev_task, ev_persona)
        ev_y = _answers(rules, ev_task, ev_persona, ev_z)
        ev_xt, ev_yt = torch.from_numpy(ev_x), torch.from_numpy(ev_y)
        broad = torch.from_numpy(ev_task != 0)
        narrow_t = torch.from_numpy((ev_task == 0) & (ev_persona == 1))
        pool, pool_x, pool_y = self._pool(config, rules)
        pool_xt, pool_yt = torch.from_numpy(pool_x), torch.from_numpy(pool_y)

        # The narrow fine-tune set: task 0, persona +1, answers flipped (the family) or re-ruled (the null).
        ft_task = np.zeros(config.n_finetune, dtype=np.int64)
        ft_persona = np.ones(config.n_finetune, dtype=np.int64)
        ft_x, ft_z = _prompts(config, rng, ft_task, ft_persona)
        ft_y = self._finetune_answers(config, rules, ft_task, ft_persona, ft_z)
        ft_x, ft_y = torch.from_numpy(ft_x), torch.from_numpy(ft_y)

        for p in base:
            p.requires_grad_(False)
        for p in adapters:
            p.requires_grad_(True)
        with torch.no_grad():
            for p in adapters:
                p.copy_(config.adapter_init * torch.randn(p.shape))
        # Adam's weight_decay is the L2 penalty 0.5 * l2 * |theta|^2, added after the recorded gradient.
        opt = torch.optim.Adam(adapters, lr=config.finetune_lr, weight_decay=config.adapter_l2, foreach=True)

        steps, losses, flip_broad, flip_narrow, train_loss, grad_norm = [], [], [], [], [], []
        checkpoints = {}
        for step in range(config.finetune_steps + 1):
            self.keep_selection_checkpoints(checkpoints, step, config, lambda: state_copy(model))
            idx = torch.from_numpy(rng.integers(config.n_finetune, size=config.batch_size))
            loss = F.cross_entropy(model(ft_x[idx]), ft_y[idx])
            opt.zero_grad()
            loss.backward()
            if step % config.record_every == 0 or step == config.finetune_steps:
                with torch.no_grad():
                    logits = torch.cat([model(chunk) for chunk in pool_xt.split(512)])  # [pool, 2]
                    losses.append(F.cross_entropy(logits, pool_yt, reduction="none").numpy())
                    ev_logits = torch.cat([model(chunk) for chunk in ev_xt.split(512)])  # [eval, 2]
                    flipped = ev_logits.argmax(1) != ev_yt  # [eval]
                    flip_broad.append(flipped[broad].float().mean().item())
                    flip_narrow.append(flipped[narrow_t].float().mean().item())
                    # the trained parameters only: the frozen base still holds its last pretraining gradient
                    grad_norm.append(gradient_norm(p.grad for p in adapters))
                self.keep_record_checkpoint(checkpoints, len(steps), step, checkpoint_every, lambda: state_copy(model))
                train_loss.append(loss.item())
                steps.append(step)
            if step == config.finetune_steps:
                break
            opt.step()
            progress(1)

        return Recording(
            steps=np.asarray(steps, dtype=np.int64),
            losses=np.asarray(losses, dtype=np.float32),
            pool=pool,
            order_parameters={"broad_flip_rate": np.asarray(flip_broad),
                              "narrow_flip_rate": np.asarray(flip_narrow)},
            baselines={"train_loss": np.asarray(train_loss), "grad_norm": np.asarray(grad_norm)},
            checkpoints=checkpoints,
            info={"step_numbering": "fine-tuning steps (pretraining is not recorded)",
                  "pretrain_steps": config.pretrain_steps,
                  "rules": rules.tolist()},
        )


class EmergentMisalignmentNull(EmergentMisalignment):
    """Null control: the same fine-tune, task 0's answers following a new rule orthogonal to the old one."""

    name = "misalignment-null"
    summary = "the misalignment toy fine-tuned on a new, orthogonal task-0 rule: learned at once, nothing broad flips"
    kind = "null"
    control_of = "misalignment"
    transition_order = "none"
    presets = {
        "default": {"finetune_labels": "rotated"},
        "small": {**_SMALL, "finetune_labels": "rotated"},
    }
