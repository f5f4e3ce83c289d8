"""Induction heads forming in a 2-layer attention-only transformer (Olsson et al. 2022).

The task. Half the training sequences (``repeat_fraction``) are ``seq_len + 1``
random tokens (uniform over ``vocab``) with a repeat structure: a block of P
fresh tokens, P drawn per sequence from [``min_period``, ``max_period``],
repeated periodically to the end (x_t = x_{t-P}); the other half are uniformly
random tokens, as most text holds no repeat to copy. The model reads tokens
0..seq_len-1 and predicts tokens 1..seq_len. In a repeat sequence, targets
inside the first block are unpredictable; every later token is predictable
*in context*: find the earlier occurrence of the current token and copy the
token that followed it. That is what an induction head does (a previous-token
head in layer 0, K-composed with a copying head in layer 1), and only an
induction head can: the period varies, so no fixed positional offset solves
the task (with the prototype's fixed 16-token repeat, one positional head
attending 15 tokens back would do). Training is online (a fresh batch every
step, each row a repeat sequence with probability ``repeat_fraction``), so no
sequence is ever seen twice. (Until version 2 every training sequence repeated
and the pool was 67% repeat, 17% shuffled, 17% random: a pool the training
data did not mirror.)

The model: token + learned position embeddings, ``n_layers`` causal multi-head
self-attention layers on the residual stream (no MLPs, no LayerNorm), a linear
unembedding; Adam, constant learning rate.

The pool (``n_pool`` fixed sequences of the training law, drawn once from the
seed, never trained on): repeat sequences at the training share, 50.0% (192 of
384; small: 48 of 96), the rest random tokens. Columns:

- ``probe_id``: ``rep0000`` / ``rand0000``;
- ``input``: the ``seq_len`` input token ids; ``target``: the ``seq_len``
  next-token ids (the same sequence shifted by one);
- ``split``: ``heldout`` for every row (training draws fresh sequences);
- ``slice``: ``repeat`` or ``random`` (no structure);
- ``has_repeat``: the first block recurs in order (True only for ``repeat``);
- ``period``: the block length P (0 for ``random``);
- ``n_copyable``: target positions an induction head predicts (seq_len - P for
  ``repeat``, else 0).

The shuffled sequences the order parameter compares with (each block after the
first an independent shuffle of the first: the same tokens in context, copying
the order wrong) are not in the training law, so they are only in the
evaluation set.

Per-sample loss: the next-token cross-entropy averaged over *all* ``seq_len``
target positions of the row (first block and repeats alike), i.e.
:func:`sequence_loss`; the recorded losses are that, at every record.

Order parameter ``induction_accuracy``, on a fixed evaluation set separate
from the pool (``n_eval`` repeat and ``n_eval`` shuffled sequences): top-1
accuracy on the copyable targets of the repeat sequences minus top-1 accuracy
at the same positions of the shuffled ones. A model that merely up-weights
tokens already in context (learned early and gradually, ~1/P accuracy) scores
~0 on it; an induction head scores ~0.8 (chance duplicates inside a block cap
it). Olsson's in-context-learning score (mean loss on the first-block targets
minus mean loss on the copyable ones, same repeat sequences) is stored beside
it as ``icl_score`` for reference; it has no transition spec, because it also
counts that early, gradual context-token learning. Onset: the first record
10% of the way from the plateau (median of the first 10 records) to the final
value (median of the last 10), held 3 records; midpoint the same at 50%; no
transition if the change is below 0.3.

Source: C. Olsson et al., "In-context Learning and Induction Heads",
Transformer Circuits Thread 2022 (arXiv:2209.11895); the attention-only
2-layer model is that of N. Elhage et al., "A Mathematical Framework for
Transformer Circuits" (2021).

Transition order: *first*, in the seeds' terms. After a plateau in which the
score sits at 0 (while the model slowly learns to favour in-context tokens),
copying switches on abruptly: the score goes from 10% to 50% in about a tenth
of the onset time, and the random sequences' losses turn round and climb (4.19
to 4.54 nats, seed 0; the shuffled controls' too) while the repeat losses fall
(4.0 to 2.2), i.e. the network rotates onto a new direction in
per-sample-loss space rather than deepening the one it was moving along.
Olsson et al. call it a phase change; mechanistically it is the escape of a
two-weight (K-composition) circuit, so the jump is a steep sigmoid, not a true
discontinuity.

Null control ``induction-heads-null``: the same model, optimizer, steps, pool
and evaluation set, trained on uniformly random tokens (no repeats). There is
nothing to copy, so no induction head forms; the per-sample losses still move
(the fit to the uniform unigram, then SGD noise). Its induction accuracy stays
at 0 +- 0.01 in every seed, well inside the 0.3 threshold. It is a fair
control because only the data law differs: architecture, optimizer, learning
rate, record schedule and the probes' own sequences are those of the family.
One honest difference: the family's plateau also holds the slow learning of
in-context token frequencies (its repeat losses drift down ~0.2 nats between
the unigram fit and the onset, the random ones not at all), which the null has nothing to drive.

The default: vocab 64, 32-token context, periods 8-16, half the training
sequences repeating, d 32, 2 layers x 2 heads, Adam 3e-3, batch 32, 1600 steps
recorded every 8 (201 records), 384 probes, 2 x 64 evaluation sequences.
Measured (version 3, torch 2.13 CPU, one thread, two runs at a time on the
shared 2-core box):

=======  ================  =============  ======  ======================
 seed     onset/midpoint    onset record   wall    null: onset (wall)
=======  ================  =============  ======  ======================
 0        816 / 912         102 of 201     19.7 s  None (10.6 s)
 1        792 / 872         99 of 201      22.8 s  None (11.8 s)
 2        656 / 728         82 of 201      13.7 s  None (10.5 s)
 3        640 / 704         80 of 201      31.1 s  None (20.3 s)
 4        864 / 944         108 of 201     29.6 s  None (19.3 s)
=======  ================  =============  ======  ======================

Plateau value 0.00 +- 0.01, final 0.81-0.85; the null's |score| stays below
0.01. ``small`` (vocab 32, 24-token context, periods 6-12, lr 5e-3, 700 steps,
record every 7, 96 probes): onset 252-357 (record 36-51 of 101), midpoint
322-455, 3-5 s, seeds 0-4; the null's small config never. Version 2 (every
training sequence repeating; 1000 steps at lr 2e-3, small 300 at 5e-3) had its
onset at 410-485 (small 99-171, seeds 0-4): half the sequences repeating, the
circuit forms about half as fast.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from probekit.eval.families.base import OrderParameter, Recording, ReferenceRun, gradient_norm, state_copy

SLICES = ("repeat", "shuffled", "random")


@dataclass(frozen=True)
class InductionHeadsConfig:
    vocab: int = 64  # few chance duplicates inside a block (they make a copy ambiguous: accuracy ~0.93)
    seq_len: int = 32  # context length; each sequence has seq_len + 1 tokens
    min_period: int = 8  # a varying period rules out a fixed-offset (positional) copy
    max_period: int = 16  # <= seq_len / 2: every sequence repeats its block at least once
    d_model: int = 32  # the prototype's d = 64 costs ~3x per step here; 32 suffices for the circuit
    n_heads: int = 2  # per layer: room for a previous-token head and an induction head
    n_layers: int = 2  # the fewest that can K-compose: one layer cannot form induction heads
    lr: float = 3e-3  # half the sequences repeat: at 2e-3 the onset moves from ~450 (all repeat) to ~1100
    batch_size: int = 32  # fresh sequences per step
    steps: int = 1600  # onset ~800, copying saturated by ~1200
    record_every: int = 8  # 201 records, ~100 before the onset
    n_eval: int = 64  # per evaluation set (repeat, shuffled): accuracy noise ~0.01
    repeat_fraction: float = 0.5  # of the training sequences with a repeated block; the rest random tokens
    n_pool: int = 384  # fresh draws of the training law: repeat_fraction of them repeat sequences
    train_data: str = "repeat"  # "random": the null control, nothing to copy
    seed: int = 0
    early_step: int = 200  # the "early" checkpoint (record 25): on the plateau, before the onset (>= 640)


def sequence_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of each row: [B, T, V] logits, [B, T] ids -> [B]."""
    targets = torch.round(targets.reshape(outputs.shape[:2]).to(torch.float64)).long()  # a float column
    return F.cross_entropy(outputs.transpose(1, 2), targets, reduction="none").mean(dim=1)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, written out (the selector's vmap needs no fused kernel)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, d] -> [B, T, d]
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # [B, h, T, d/h]
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)  # [B, h, T, T]
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        pattern = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        return self.out((pattern @ v).transpose(1, 2).reshape(b, t, d))


class AttentionOnlyTransformer(nn.Module):
    """Token + position embeddings, attention layers on the residual stream, unembedding."""

    def __init__(self, vocab: int, seq_len: int, d_model: int, n_heads: int, n_layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(seq_len, d_model)
        self.layers = nn.ModuleList(CausalSelfAttention(d_model, n_heads) for _ in range(n_layers))
        self.unembed = nn.Linear(d_model, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, T] ids -> [B, T, vocab] logits
        resid = self.embed(tokens.long()) + self.pos.weight[: tokens.shape[1]]  # [B, T, d]
        for layer in self.layers:
            resid = resid + layer(resid)
        return self.unembed(resid)


def make_sequences(kind: str, n: int, config: InductionHeadsConfig,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, seq_len + 1] token ids of one slice and [n] block lengths P (0 for ``random``)."""
    c = config
    tokens = torch.randint(0, c.vocab, (n, c.seq_len + 1), generator=gen)  # [n, T+1]
    period = torch.randint(c.min_period, c.max_period + 1, (n,), generator=gen)  # [n]
    if kind == "random":
        return tokens, torch.zeros_like(period)
    pos = torch.arange(c.seq_len + 1).expand(n, -1)  # [n, T+1]
    block, offset = pos // period[:, None], pos % period[:, None]
    if kind == "repeat":
        source = offset
    elif kind == "shuffled":  # block b >= 1 reads the first block through its own permutation
        n_blocks = c.seq_len // c.min_period + 1
        keys = torch.rand(n, n_blocks, c.max_period, generator=gen)
        keys = keys.masked_fill(torch.arange(c.max_period) >= period[:, None, None], 2.0)
        perms = keys.argsort(dim=-1)  # [n, blocks, max_period]: first P entries permute 0..P-1
        source = torch.where(block == 0, offset, perms[torch.arange(n)[:, None], block, offset])
    else:
        raise ValueError(f"unknown sequence kind {kind!r}; expected one of {SLICES}")
    return torch.gather(tokens[:, : c.max_period], 1, source), period


def _generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, stream]).generate_state(1)[0]))


def _copyable(period: torch.Tensor, seq_len: int) -> torch.Tensor:
    """[n, T] mask of the input positions t >= P, whose next token x_{t+1} = x_{t+1-P} can be copied."""
    return torch.arange(seq_len)[None, :] >= period[:, None]


def pool_repeats(config: InductionHeadsConfig) -> int:
    """How many of the pool's ``n_pool`` sequences repeat a block: the training law's share, rounded."""
    return int(round(config.repeat_fraction * config.n_pool))


def training_batch(config: InductionHeadsConfig, gen: torch.Generator) -> torch.Tensor:
    """[batch_size, seq_len + 1] fresh training sequences: each a repeat sequence with probability
    ``repeat_fraction``, else uniformly random tokens (``train_data="random"``: random tokens only)."""
    c = config
    if c.train_data == "random":
        return make_sequences("random", c.batch_size, c, gen)[0]
    repeats = make_sequences("repeat", c.batch_size, c, gen)[0]
    if c.repeat_fraction >= 1.0:
        return repeats
    noise = make_sequences("random", c.batch_size, c, gen)[0]
    keep = torch.rand(c.batch_size, generator=gen) < c.repeat_fraction  # [B]
    return torch.where(keep[:, None], repeats, noise)


class InductionHeads(ReferenceRun):
    """Induction heads: a 2-layer attention-only transformer learns in-context copying (Olsson et al. 2022).

    Pool: fresh sequences of the training law, half of them repeat sequences (50.0%, as in training); the
    order parameter's repeat and shuffled sequences are an evaluation set outside it."""

    name = "induction-heads"
    summary = "2-layer attention-only transformer on sequences half of which repeat a block forms induction heads"
    paper = "Olsson et al., In-context Learning and Induction Heads, 2022 (arXiv:2209.11895)"
    transition_order = "first"
    # 2: grad_norm squared in float64 (gradient_norm); the losses are unchanged. 3: half the training
    # sequences repeat (the rest random tokens) and the pool holds them at that share, no shuffled controls
    version = 3
    config_class = InductionHeadsConfig
    config_options = {"train_data": ("repeat", "random")}
    # small: vocab 32, 24-token context, periods 6-12, lr 5e-3, 700 steps, 96 probes (~3 s)
    presets = {"small": {"vocab": 32, "seq_len": 24, "min_period": 6, "max_period": 12, "lr": 5e-3,
                         "steps": 700, "record_every": 7, "n_eval": 48, "n_pool": 96, "early_step": 70}}
    loss = staticmethod(sequence_loss)
    concerns = {"repeats": ["slice=repeat"]}  # in-context copying: the sequences with a repeated block
    pilot_records = {"default": 20, "small": 10}  # onset at record >= 80 (small: >= 36)
    llc_checkpoint_every = {"default": 8, "small": 4}  # ~25 LLC estimates a run
    llc_lr = 1e-2  # benchmarks/calibrate_llc.py: passes at all three checkpoints
    llc_calibrated = True

    def order_parameters(self, config: InductionHeadsConfig) -> list[OrderParameter]:
        return [OrderParameter(
            "induction_accuracy",
            "top-1 accuracy on copyable tokens of repeat sequences minus the same positions of shuffled ones",
            min_change=0.3,  # the family ends at 0.80-0.84, the null drifts < 0.02
        )]

    def total_steps(self, config: InductionHeadsConfig) -> int:
        return config.steps

    def build_model(self, config: InductionHeadsConfig) -> AttentionOnlyTransformer:
        c = config
        return AttentionOnlyTransformer(c.vocab, c.seq_len, c.d_model, c.n_heads, c.n_layers)

    def _pool(self, config: InductionHeadsConfig) -> tuple[dict[str, list], torch.Tensor, torch.Tensor]:
        """The pool's columns, its [pool, T] inputs and [pool, T] targets."""
        c, gen = config, _generator(config.seed, 1)
        rows, periods, names = [], [], []
        n_repeat = pool_repeats(c)
        for kind, n, prefix in (("repeat", n_repeat, "rep"), ("random", c.n_pool - n_repeat, "rand")):
            tokens, period = make_sequences(kind, n, c, gen)
            rows.append(tokens)
            periods.append(period)
            names += [(kind, f"{prefix}{i:04d}") for i in range(n)]
        tokens, period = torch.cat(rows), torch.cat(periods)  # [pool, T+1], [pool]
        is_repeat = [kind == "repeat" for kind, _ in names]
        pool = {
            "probe_id": [pid for _, pid in names],
            "input": tokens[:, :-1].tolist(),
            "target": tokens[:, 1:].tolist(),
            "split": ["heldout"] * len(names),
            "slice": [kind for kind, _ in names],
            "has_repeat": is_repeat,
            "period": period.tolist(),
            "n_copyable": [c.seq_len - p if rep else 0 for p, rep in zip(period.tolist(), is_repeat)],
        }
        return pool, tokens[:, :-1], tokens[:, 1:]

    def record(self, config: InductionHeadsConfig, progress: Callable[[int], None],
               checkpoint_every: int = 0) -> Recording:
        c = config
        torch.manual_seed(c.seed)
        np.random.seed(c.seed)
        pool, pool_x, pool_y = self._pool(c)  # [pool, T] each
        eval_gen = _generator(c.seed, 2)
        rep, rep_period = make_sequences("repeat", c.n_eval, c, eval_gen)  # [n_eval, T+1]
        shuf, shuf_period = make_sequences("shuffled", c.n_eval, c, eval_gen)
        rep_copy, shuf_copy = _copyable(rep_period, c.seq_len), _copyable(shuf_period, c.seq_len)  # [n_eval, T]
        train_gen = _generator(c.seed, 3)
        model = self.build_model(c)
        opt = torch.optim.Adam(model.parameters(), lr=c.lr)

        steps, losses, accuracy, icl, train_loss, grad_norm, checkpoints = [], [], [], [], [], [], {}
        for step in range(c.steps + 1):
            self.keep_selection_checkpoints(checkpoints, step, c, lambda: state_copy(model))
            is_record = step % c.record_every == 0 or step == c.steps
            if is_record:
                with torch.no_grad():
                    losses.append(torch.cat([sequence_loss(model(x), y) for x, y in
                                             zip(pool_x.split(256), pool_y.split(256))]).numpy())
                    rep_logits, shuf_logits = model(rep[:, :-1]), model(shuf[:, :-1])  # [n_eval, T, V]
                    rep_hit = rep_logits.argmax(-1) == rep[:, 1:]
                    shuf_hit = shuf_logits.argmax(-1) == shuf[:, 1:]
                    accuracy.append(rep_hit[rep_copy].float().mean().item()
                                    - shuf_hit[shuf_copy].float().mean().item())
                    token_loss = F.cross_entropy(
                        rep_logits.transpose(1, 2), rep[:, 1:], reduction="none")  # [n_eval, T]
                    icl.append(token_loss[~rep_copy].mean().item() - token_loss[rep_copy].mean().item())
                self.keep_record_checkpoint(checkpoints, len(steps), step, checkpoint_every, lambda: state_copy(model))
                steps.append(step)
            # The batch is drawn on every step, recorded or not, so the records change no update.
            batch = training_batch(c, train_gen)  # [B, T+1]
            loss = sequence_loss(model(batch[:, :-1]), batch[:, 1:]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if is_record:
                train_loss.append(loss.item())
                grad_norm.append(gradient_norm(p.grad for p in model.parameters()))
            if step == c.steps:
                break
            opt.step()
            progress(1)

        return Recording(
            steps=np.asarray(steps, dtype=np.int64),
            losses=np.asarray(losses, dtype=np.float32),  # [records, pool]
            pool=pool,
            order_parameters={"induction_accuracy": np.asarray(accuracy), "icl_score": np.asarray(icl)},
            baselines={"train_loss": np.asarray(train_loss), "grad_norm": np.asarray(grad_norm)},
            checkpoints=checkpoints,
            info={"train_data": c.train_data, "periods": [c.min_period, c.max_period]},
        )


class InductionHeadsNull(InductionHeads):
    """Null control: the induction-heads transformer trained on random tokens (nothing to copy)."""

    name = "induction-heads-null"
    summary = "the induction-heads transformer trained on uniformly random tokens: no induction head forms"
    kind = "null"
    control_of = "induction-heads"
    transition_order = "none"
    presets = {
        "default": {"train_data": "random"},
        "small": {**InductionHeads.presets["small"], "train_data": "random"},
    }
