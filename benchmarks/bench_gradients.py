"""Per-sample gradient sketches: the factorized sketch vs its floor, the dense projection and a per-example loop.

Three models, built from configs (no download): the MLP 128-256-256-10 (10k examples, batches of
256), a tiny transformer 2 x 64, T = 16 (10k, 256) and the 13.8M-parameter GPT-2
(``GPT2Config(vocab_size=8192, n_positions=32, n_embd=384, n_layer=6, n_head=6)``, eval mode,
32-token sequences, each sequence's mean causal-LM loss: ``probekit.selection.causal_lm``; 256
examples, batches of 16). Per model, at one torch thread and at the default thread count,
milliseconds per example of

  - floor: one batched forward + ``backward()`` of the summed per-sample losses over the same
    batches (``zero_grad`` each batch): the physical floor of any per-sample gradient;
  - factorized: ``gradient_sketches(method="factorized")`` (``factor_dim`` 32);
  - projection: ``gradient_sketches(method="projection")``: vmap per-sample gradients times the
    dense Gaussian matrix R (P x dim). On GPT-2 R is 14 GB, so it is redrawn chunk by chunk for
    every batch; it is timed on the first 32 examples there;
  - loop: one example at a time, forward + ``loss.backward()``, the ``.grad`` tensors flattened
    and projected by the same R (``projection_matrix``), timed on the first 500 examples (16 on
    GPT-2, whose R does not fit in memory: the 16 examples' gradients are stacked and projected in
    one pass by the dense path's own chunked projector);

every one the median of interleaved repeats, each cost per example extrapolated from the examples
it ran on; and the ratios factorized / floor, projection / factorized, loop / factorized
(``loop bwd``: the loop's forward + backward share).
Correctness: on the first 8 examples, ``fact.diff`` is max |factorized - ref| / max |ref| with
ref = per-example loop gradients @ ``factorized_projection_matrix`` (on GPT-2 that matrix is
13.8M x 256 floats: it is checked on a 2-layer x 64 GPT-2 instead, marked *); ``proj.diff`` the
same for the projection against the loop's sketches, on every example both ran.

Memory: each method runs alone in a fresh subprocess (started first, while this process is small:
a child's ``ru_maxrss`` starts at the RSS it was forked with); peak RSS (``ru_maxrss``) after it,
minus the RSS just before it ran (model and data built), and as a cross-check the growth of
VmHWM reset just before the run (``/proc/self/clear_refs``). On GPT-2 at batch 8, 16, 32
(projection at 8 and 16): the factorized sketch's peak grows with batch x layer widths, like the floor's; the
projection's with batch x parameters.

Target (issue): factorized <= 1.5 x the floor at one thread, on every model.

    python benchmarks/bench_gradients.py            # ~13 minutes on 2 shared cores
    python benchmarks/bench_gradients.py --quick    # 2k / 64 (GPT-2) examples, loop on 100 / 8: ~6 minutes
    python benchmarks/bench_gradients.py --no-memory --repeats 5   # timings only, more repeats
    python benchmarks/bench_gradients.py --no-memory --models mlp transformer   # the small models only
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from probekit.selection.factorized_pool import factorized_projection_matrix
from probekit.selection.grad_sketch import _Projector, gradient_sketches, projection_matrix

DIM, FACTOR_DIM, N_CHECK = 256, 32, 8
METHODS = ("floor", "factorized", "projection", "loop")


@dataclass
class TinyTransformerConfig:
    vocab: int = 512  # small vocabulary: the embedding stays ~1/3 of the parameters
    seq_len: int = 16
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    d_ff: int = 128  # 2 x d_model: tiny, so per-example overhead, not flops, dominates the loop
    n_classes: int = 4


class TinyTransformer(nn.Module):
    """Token + learned position embeddings -> TransformerEncoder -> mean pool -> linear head."""

    def __init__(self, cfg: TinyTransformerConfig) -> None:
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab, cfg.d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(cfg.seq_len, cfg.d_model))
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, dim_feedforward=cfg.d_ff,
                                           dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, T] -> [B, classes]
        return self.head(self.encoder(self.tok(tokens) + self.pos).mean(1))


def ce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, targets, reduction="none")


@dataclass
class Case:
    name: str
    model: nn.Module
    args: tuple  # model(*args): [N, ...] each
    targets: torch.Tensor  # [N, ...]
    loss: object  # (outputs, targets) -> [B]
    batch: int
    n_proj: int  # examples the projection is timed on
    n_loop: int  # examples the loop is timed on
    big: bool = False  # R does not fit: the loop projects its stacked gradients in one chunked pass

    def rows(self, lo: int, hi: int) -> tuple[tuple, torch.Tensor]:
        return tuple(a[lo:hi] for a in self.args), self.targets[lo:hi]


def gpt2(n: int, *, vocab=8192, n_embd=384, n_layer=6, n_head=6, seq=32, seed=0):
    """(CausalLMForSketch model, (ids, mask), labels) for n random full-length sequences."""
    import transformers
    from transformers.utils import logging as hf_logging

    from probekit.selection.causal_lm import CausalLMForSketch, causal_lm_labels

    hf_logging.set_verbosity_error()
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=seq, n_embd=n_embd, n_layer=n_layer,
                                  n_head=n_head, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(seed)
    lm = transformers.GPT2LMHeadModel(cfg).eval()
    lm.config.pad_token_id = None  # as load_causal_lm leaves it
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, seq), generator=g)
    mask = torch.ones_like(ids)
    return CausalLMForSketch(lm), (ids, mask), causal_lm_labels(ids, mask)


def build(which: str, n: int, quick: bool) -> Case:
    from probekit.selection.causal_lm import sequence_loss

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    if which == "mlp":
        mlp = nn.Sequential(nn.Linear(128, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 10))
        x, y = torch.randn(n, 128, generator=g), torch.randint(0, 10, (n,), generator=g)
        return Case("mlp 128-256-256-10", mlp.eval(), (x,), y, ce, 256, n, 100 if quick else 500)
    if which == "transformer":
        cfg = TinyTransformerConfig()
        tiny = TinyTransformer(cfg)
        x = torch.randint(0, cfg.vocab, (n, cfg.seq_len), generator=g)
        y = torch.randint(0, cfg.n_classes, (n,), generator=g)
        return Case("transformer 2x64, T=16", tiny.eval(), (x,), y, ce, 256, n, 100 if quick else 500)
    model, args, labels = gpt2(n)
    return Case("gpt-2 6x384, T=32", model, args, labels, sequence_loss, 16, 16 if quick else 32,
                8 if quick else 16, big=True)


# -- the four paths -------------------------------------------------------------------------
def run_floor(c: Case, n: int) -> None:
    for lo in range(0, n, c.batch):
        xb, yb = c.rows(lo, min(lo + c.batch, n))
        c.model.zero_grad(set_to_none=True)
        c.loss(c.model(*xb), yb).sum().backward()
    c.model.zero_grad(set_to_none=True)


def run_sketch(c: Case, n: int, method: str) -> np.ndarray:
    xb, yb = c.rows(0, n)
    kw = {"factor_dim": FACTOR_DIM} if method == "factorized" else {}
    return gradient_sketches(c.model, xb, yb, c.loss, dim=DIM, seed=0, batch_size=c.batch, method=method, **kw)


def loop_grads(c: Case, i: int, names: list[str]) -> list[torch.Tensor]:
    """Example i's gradient, one tensor per name (model.zero_grad, forward, backward)."""
    c.model.zero_grad(set_to_none=True)
    xb, yb = c.rows(i, i + 1)
    c.loss(c.model(*xb), yb).sum().backward()
    params = dict(c.model.named_parameters())
    return [params[k].grad.reshape(-1) for k in names]


def run_loop(c: Case, n: int, r: torch.Tensor | None) -> tuple[np.ndarray, float]:
    """([n, dim], seconds in forward + backward): per-example backward, each gradient flattened and
    projected by R (P x dim), or, when R does not fit (``r`` None), stacked and projected in one
    pass by the dense path's chunked projector."""
    chosen = [(k, p) for k, p in c.model.named_parameters() if p.requires_grad]
    names = [k for k, _ in chosen]
    out = np.empty((n, DIM), dtype=np.float32)
    stacked, backward = [], 0.0
    for i in range(n):
        t0 = time.perf_counter()
        grads = loop_grads(c, i, names)
        backward += time.perf_counter() - t0
        flat = torch.cat(grads)  # [P]
        if r is not None:
            out[i] = (flat @ r).numpy()
        else:
            stacked.append(flat)
    c.model.zero_grad(set_to_none=True)
    if r is None:
        grads = torch.stack(stacked)  # [n, P]
        del stacked
        parts, lo = {}, 0
        for k, p in chosen:
            parts[k] = grads[:, lo:lo + p.numel()]
            lo += p.numel()
        with torch.no_grad():
            out[:] = _Projector(chosen, DIM, 0)(parts).numpy()  # the projection path's R, chunk by chunk
    return out, backward


def rel_diff(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def factorized_diff(c: Case) -> float:
    """max |factorized - loop gradients @ factorized_projection_matrix| / max |ref| on N_CHECK examples."""
    xb, yb = c.rows(0, c.batch)  # the first batch: the one whose check picks the dense-path parameters
    m = factorized_projection_matrix(c.model, dim=DIM, seed=0, factor_dim=FACTOR_DIM, batch=(xb, yb, c.loss))
    names = list(m)
    ref = np.stack([sum(g @ m[k] for g, k in zip(loop_grads(c, i, names), names)).numpy()
                    for i in range(N_CHECK)])
    c.model.zero_grad(set_to_none=True)
    return rel_diff(run_sketch(c, N_CHECK, "factorized"), ref)


# -- timing ---------------------------------------------------------------------------------
def time_case(c: Case, repeats: int) -> dict:
    n = len(c.targets)
    r = None
    if not c.big:
        parts = projection_matrix(c.model, dim=DIM, seed=0)
        r = torch.cat(list(parts.values()))  # [P, dim], named_parameters order, as the loop flattens
        del parts
    runs = {"floor": lambda: run_floor(c, n), "factorized": lambda: run_sketch(c, n, "factorized"),
            "projection": lambda: run_sketch(c, c.n_proj, "projection"), "loop": lambda: run_loop(c, c.n_loop, r)}
    counts = {"floor": n, "factorized": n, "projection": c.n_proj, "loop": c.n_loop}
    # warm-up: one small batch of each (allocator, vmap tracing, lazy imports)
    run_floor(c, c.batch)
    run_sketch(c, c.batch, "factorized")
    if not c.big:
        run_sketch(c, c.batch, "projection")
        run_loop(c, 4, r)
    times: dict[str, list[float]] = {k: [] for k in (*METHODS, "loop bwd")}
    outs = {}
    for _ in range(repeats):  # interleaved: drift hits every path alike
        for k in METHODS:
            t0 = time.perf_counter()
            outs[k] = runs[k]()
            times[k].append((time.perf_counter() - t0) / counts[k] * 1e3)
        outs["loop"], backward = outs["loop"]
        times["loop bwd"].append(backward / c.n_loop * 1e3)
    ms = {k: statistics.median(v) for k, v in times.items()}
    m = min(c.n_loop, c.n_proj)
    ms["proj.diff"] = rel_diff(outs["projection"][:m], outs["loop"][:m])
    ms["sketches"] = outs["factorized"]
    return ms


# -- memory, one method per subprocess ------------------------------------------------------
def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def child(which: str, method: str, batch: int, n: int) -> None:
    c = build(which, n, quick=True)
    c.batch = batch
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM: the peak from here on is the method's alone
        f.write("5")
    before, peak_before = _status_mb("VmRSS"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    run_floor(c, n) if method == "floor" else run_sketch(c, n, method)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    p = sum(q.numel() for q in c.model.parameters() if q.requires_grad)
    print(json.dumps({"before": before, "peak_before": peak_before, "peak": peak, "hwm": _status_mb("VmHWM"),
                      "s": wall, "p": p}))


def memory(quick: bool) -> None:
    """Run first, while this process is small: a child's ru_maxrss starts at the RSS it was forked with."""
    plan = [(w, m, 256, 512) for w in ("mlp", "transformer") for m in ("floor", "factorized", "projection")]
    plan += [("gpt2", m, b, b) for b in (8, 16, 32) for m in ("floor", "factorized")]
    plan += [("gpt2", "projection", b, b) for b in ((8,) if quick else (8, 16))]
    print(f"Peak RSS, each method alone in a fresh process ({torch.get_num_threads()} threads), over 'ex' examples: "
          "RSS just before it ran (model and data built), ru_maxrss after it, and the growth (peak - before); "
          "'hwm' is the growth of VmHWM reset just before the run (a cross-check). B*P*4 = one batch's "
          "per-sample gradients.")
    print(f"{'model':<12} {'method':<11} {'batch':>5} {'ex':>4} {'before MB':>10} {'peak MB':>8} {'growth MB':>10} "
          f"{'hwm MB':>7} {'B*P*4 MB':>9} {'s':>6}")
    for which, method, batch, n in plan:
        res = subprocess.run([sys.executable, __file__, "--child", which, method, str(batch), str(n)],
                             capture_output=True, text=True, check=True)
        d = json.loads(res.stdout.strip().splitlines()[-1])
        note = "" if d["peak"] > d["peak_before"] + 1 else "  (ru_maxrss: peak reached before the run)"
        print(f"{which:<12} {method:<11} {batch:>5} {n:>4} {d['before']:>10.0f} {d['peak']:>8.0f} "
              f"{d['peak'] - d['before']:>10.0f} {d['hwm'] - d['before']:>7.0f} {batch * d['p'] * 4 / 2**20:>9.0f} "
              f"{d['s']:>6.1f}{note}", flush=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k examples (64 on GPT-2), loop on 100 (8)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats, median reported (default 3)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    parser.add_argument("--models", nargs="+", choices=("mlp", "transformer", "gpt2"),
                        default=("mlp", "transformer", "gpt2"), help="which models to time (default all)")
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "METHOD", "BATCH", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        which, method, batch, n = args.child
        return child(which, method, int(batch), int(n))
    t_start = time.perf_counter()
    if not args.no_memory:
        memory(args.quick)
    n, n_gpt = (2000, 64) if args.quick else (10_000, 256)
    default_threads = torch.get_num_threads()
    print(f"sketch dim {DIM}, factor_dim {FACTOR_DIM}, median of {args.repeats} interleaved repeats; ms per example, "
          "each path's cost extrapolated per example from the examples it ran on.")
    print(f"{'model':<23} {'P':>8} {'thr':>3} {'floor':>7} {'fact.':>7} {'proj.':>8} {'loop':>8} {'fact/floor':>10} "
          f"{'proj/fact':>9} {'loop/fact':>9} {'loop bwd':>8} {'fact.diff':>9} {'proj.diff':>9}")
    notes = []
    for which, size in ((w, n_gpt if w == "gpt2" else n) for w in args.models):
        t_model = time.perf_counter()
        c = build(which, size, args.quick)
        p = sum(q.numel() for q in c.model.parameters() if q.requires_grad)
        notes.append(f"{c.name}: floor and factorized on {size} examples, projection on {c.n_proj}, loop on "
                     f"{c.n_loop}, batches of {c.batch}")
        if c.big:
            small = Case("gpt-2 2x64", *gpt2(c.batch, vocab=512, n_embd=64, n_layer=2, n_head=2), c.loss,
                         c.batch, c.batch, N_CHECK)
            fdiff, mark = factorized_diff(small), "*"
        else:
            fdiff, mark = factorized_diff(c), ""
        for threads in dict.fromkeys([1, default_threads]):
            torch.set_num_threads(threads)
            ms = time_case(c, args.repeats)
            print(f"{c.name:<23} {p:>8} {threads:>3} {ms['floor']:>7.3f} {ms['factorized']:>7.3f} "
                  f"{ms['projection']:>8.3f} {ms['loop']:>8.3f} {ms['factorized'] / ms['floor']:>9.2f}x "
                  f"{ms['projection'] / ms['factorized']:>8.1f}x {ms['loop'] / ms['factorized']:>8.1f}x "
                  f"{ms['loop bwd']:>8.3f} {fdiff:>8.1e}{mark or ' '} {ms['proj.diff']:>9.1e}", flush=True)
        torch.set_num_threads(default_threads)
        notes[-1] += f" ({time.perf_counter() - t_model:.0f} s for this model)"
        del c
    for line in notes:
        print("  " + line)
    print("  * GPT-2's factorized_projection_matrix is 13.8M x 256 floats (14 GB): fact.diff is checked on a "
          "2-layer x 64 GPT-2 (vocab 512, T=32) instead.")
    print("  GPT-2's loop: R does not fit in memory; its gradients are stacked and projected in one pass by the "
          "projection path's chunked projector (R redrawn, as the projection path does per batch).")
    print("  loop bwd: the loop's forward + backward share, ms per example (the rest is flattening and projecting).")
    print("Target (issue): fact/floor <= 1.5 at one thread, on every model.")
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
