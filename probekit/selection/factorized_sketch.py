"""Factorized per-layer gradient sketches: every per-sample gradient projected without being formed.

For a linear layer z = W a (+ b) seen at positions t = 1..T, the gradient of one example's loss
with respect to W is a sum of outer products, G = sum_t g_t a_t^T, with g_t = dloss/dz_t. Its
projection by a Kronecker-structured matrix needs only the projected factors:

    vec(A^T G B) = vec(sum_t (A^T g_t)(B^T a_t)^T),   A: [rows, k], B: [cols, k], N(0, 1/k)

which costs O(T (rows + cols) k) per example instead of O(rows cols dim) (LoGra, Choe et al.
2024; the factored form of TRAK and BADGE). A seeded CountSketch C: [k_rows k_cols, dim] (each
entry of the block added, with a random sign, to one random coordinate: O(k^2) per example where
a dense Gaussian costs O(k^2 dim)) mixes each layer's k x k block down to the sketch dimension,
and the layers' sketches
add up: the whole sketch is ``vec(grad) @ M`` with M = (A kron B) C stacked over the parameters,
one fixed linear map, so inner products survive in expectation as with a dense Gaussian.
A side no wider than k is kept as it is (A = I: exact on that side). Vectors (biases, layer-norm
gains) are CountSketched from their per-sample gradients, sum_t g_t (bias) and
sum_t g_t * xhat_t (layer-norm gain).

Handled layers: ``nn.Linear``, ``nn.Embedding`` (the row side is the token's one-hot, so A^T
e_token is a row of A; ``padding_idx`` tokens give no gradient, as in torch), transformers'
``Conv1D`` (GPT-2's layers, weight [in, out]) and ``nn.LayerNorm``. A weight tied between two
of them (GPT-2's token embedding and output head) gets the contributions of both, projected by
one matrix. The factors come from forward hooks (inputs, outputs) and one
``torch.autograd.grad`` of the summed per-sample losses with respect to the layers' outputs:
one batched forward and less than one backward (no weight gradient is computed).

Every other chosen parameter (e.g. ``nn.MultiheadAttention``'s fused input projection, a free
position-embedding tensor) goes through the dense ``projection`` path (vmap per-sample
gradients, the same seeded R as ``method="projection"``), and so does a handled parameter that
the first batch's check finds the hooks do not see whole (a module never called, a weight also
used outside its module, a layer whose dim 0 is not the batch). The check: for the first, middle and
last examples of the first batch, the hooked sketch of each parameter against the projection, by the same
matrices, of that example's true gradient (``torch.autograd.grad`` of its loss alone).
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch.func import functional_call

from probekit.errors import ProbekitUsageError
from probekit.selection.factorized_attention import exposed, handles
from probekit.selection.factorized_layers import accumulate, supported_layers
from probekit.selection.factorized_matrices import LayerProjection, matrix_projection, vector_projection
from probekit.torch_params import check_per_sample_losses, choose_parameters

__all__ = ["FactorizedSketcher", "PlanChanged", "supported_layers"]

log = logging.getLogger(__name__)

class PlanChanged(Exception):
    """A batch in which layers the first batch's check saw whole do not fit (their dim 0 is not the batch's):
    ``sketch_pool`` sends them to the dense path and starts the pool again, so every example is sketched by
    one map."""

    def __init__(self, names: set[str]) -> None:
        super().__init__(", ".join(sorted(names)))
        self.names = set(names)


STANDIN_BYTES = 64 * 2**20  # a stand-in's dense projection block, numel x dim floats, at most this
CHECK_TOL = {torch.float64: 1e-6, torch.float32: 2e-3}  # relative, per parameter; anything else 5e-2


@dataclass
class _Plan:
    matrices: dict[str, LayerProjection] = field(default_factory=dict)  # 2-D parameters
    vectors: dict[str, LayerProjection] = field(default_factory=dict)  # 1-D parameters: a CountSketch [n, dim]
    hooks: list[tuple[torch.nn.Module, str, str | None, str | None]] = field(default_factory=list)  # weight, bias
    # nn.MultiheadAttention written out: module, {"in": (weight, bias), "out": (weight, bias)} names
    attention: list[tuple[torch.nn.Module, dict[str, tuple[str | None, str | None]]]] = field(default_factory=list)


class FactorizedSketcher:
    """[B, dim] sketches of per-sample loss gradients, batch by batch; see the module doc.

    ``params``: the parameter names to sketch (default: every one with requires_grad).
    After the first batch, ``dense`` names the chosen parameters the dense path sketches.
    """

    def __init__(self, model: torch.nn.Module, *, dim: int, seed: int, factor_dim: int,
                 params: Sequence[str] | None = None, owner: str = "gradient_sketches") -> None:
        self.model, self.dim, self.seed, self.k, self.owner = model, dim, seed, factor_dim, owner
        noisy = [k for k, m in model.named_modules() if m.training and (
            (isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0)
            or isinstance(m, torch.nn.modules.batchnorm._BatchNorm))]
        if noisy:  # dropout draws differ per pass; batch norm couples the examples and writes its buffers
            kind = type(model.get_submodule(noisy[0])).__name__
            raise ProbekitUsageError(f"{owner} needs the model in eval mode: {noisy[0]} ({kind}) is in train mode; "
                                     "call model.eval() first.")
        self.chosen = choose_parameters(owner, model, params)
        self.device = self.chosen[0][1].device
        self.names = {id(p): k for k, p in model.named_parameters()}  # a tied weight: its first name
        self.plan = self._build({k for k, _ in self.chosen})
        handled = set(self.plan.matrices) | set(self.plan.vectors)
        rest = [(k, p) for k, p in self.chosen if k not in handled]
        # A parameter no handled layer holds (a free position table, a scale) is given, for the pass, a
        # stand-in expanded over the batch, [B, *shape]: where it meets batched tensors by broadcasting,
        # the stand-in's gradient is the per-sample gradient. Its sketch uses the dense path's matrix.
        self.standins = [k for k, p in rest if p.numel() * dim * 4 <= STANDIN_BYTES]
        self.dense = [k for k, p in rest if k not in self.standins]  # vmap per-sample gradients
        self._r: dict[str, torch.Tensor] = {}
        self.shared: set[int] = set()  # modules whose one row the check saw shared by the batch
        self.cloned: set[int] = set()  # modules whose output the model changes in place: it gets a copy
        self._no_expand = False
        self.checked = False

    # -- the plan: which layers, which matrices ---------------------------------------
    def _matrix(self, name: str, shape: torch.Size) -> LayerProjection:
        return matrix_projection(self.seed, name, int(shape[0]), int(shape[1]), self.k, self.dim, self.device)

    def _vector(self, name: str, numel: int) -> LayerProjection:
        return vector_projection(self.seed, name, numel, self.dim, self.device)

    def _build(self, wanted: set[str]) -> _Plan:
        plan = _Plan()
        for _, module, kind in supported_layers(self.model):
            w = self.names.get(id(module.weight)) if module.weight is not None else None
            bias = getattr(module, "bias", None)
            bname = self.names.get(id(bias)) if isinstance(bias, torch.Tensor) else None
            w = w if w in wanted else None
            bname = bname if bname in wanted else None
            if w is None and bname is None:
                continue
            if w is not None:
                if kind == "layernorm":
                    plan.vectors.setdefault(w, self._vector(w, module.weight.numel()))
                elif w not in plan.matrices:  # a tied weight's second layer reuses the first one's matrix
                    plan.matrices[w] = self._matrix(w, module.weight.shape)
            if bname is not None:
                plan.vectors.setdefault(bname, self._vector(bname, bias.numel()))
            plan.hooks.append((module, kind, w, bname))
        for _, module in self.model.named_modules():
            if not handles(module) or "forward" in vars(module):  # a user's own forward on the instance: kept
                continue
            names = {}
            for which, (w, b) in {"in": (module.in_proj_weight, module.in_proj_bias),
                                  "out": (module.out_proj.weight, module.out_proj.bias)}.items():
                wn, bn = self.names.get(id(w)), self.names.get(id(b)) if b is not None else None
                names[which] = (wn if wn in wanted else None, bn if bn in wanted else None)
            win, bin_ = names["in"]
            if win is not None and win not in plan.matrices:
                plan.matrices[win] = self._matrix(win, module.in_proj_weight.shape)
            if bin_ is not None:
                plan.vectors.setdefault(bin_, self._vector(bin_, module.in_proj_bias.numel()))
            plan.attention.append((module, names))
        return plan

    def drop(self, names: set[str]) -> None:
        """Send ``names`` to the dense path (the first batch's check found the hooks do not see them whole)."""
        for n in names:
            self.plan.matrices.pop(n, None)
            self.plan.vectors.pop(n, None)
        self.standins = [k for k in self.standins if k not in names]
        self.plan.hooks = [(m, kind, None if w in names else w, None if b in names else b)
                           for m, kind, w, b in self.plan.hooks]
        self.plan.hooks = [h for h in self.plan.hooks if h[2] is not None or h[3] is not None]
        self.plan.attention = [(m, {k: tuple(None if v in names else v for v in wb) for k, wb in nm.items()})
                               for m, nm in self.plan.attention]
        # a written-out attention none of whose weights is still sketched here runs torch's own forward again
        self.plan.attention = [(m, nm) for m, nm in self.plan.attention
                               if any(v is not None for wb in nm.values() for v in wb)]
        self.dense = [k for k, _ in self.chosen if k in names or k in self.dense]

    # -- one batch ---------------------------------------------------------------------
    def prepare(self, args: tuple, targets: Any, loss_fn: Callable) -> None:
        """The check, on the first, middle and last examples of a first batch (a batch of their own,
        so that it costs a few examples' passes, not a batch's)."""
        n = args[0].shape[0]
        rows = sorted({0, n // 2, n - 1})
        self.sketch(tuple(a[rows] for a in args), targets[rows], loss_fn, check=True)

    def sketch(self, args: tuple, targets: Any, loss_fn: Callable, *, check: bool = False
               ) -> dict[str, torch.Tensor]:
        """{"": [B, dim]} float32 sketches of the per-sample gradients of the parameters this path takes;
        with ``check``, one [B, dim] sketch per parameter (name -> sketch), then the check."""
        n = args[0].shape[0]
        # (kind, weight name, bias name, module, input, output, the output's version when the hook saw it)
        calls: list[tuple[str, str | None, str | None, Any, torch.Tensor, torch.Tensor, int]] = []
        bad: set[str] = set()

        expanded: set[str] = set()  # names of the layers whose one shared row was expanded in this pass

        def hook_for(kind: str, w: str | None, b: str | None):
            def hook(module, args_, kwargs, output):
                x = args_[0] if args_ else next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)
                ret = None
                row = isinstance(output, torch.Tensor) and x is not None and output.ndim == x.ndim + (kind == "embedding") \
                    and output.shape[0] == x.shape[0] == 1  # one row (a batch of one, or shared by the batch)
                if row and n > 1 and (id(module) in self.shared or (check and not self._no_expand)):
                    # one row shared by the batch (GPT-2's position embedding of [1, T] positions): autograd
                    # would sum its gradient over the examples; a [B, ...] view keeps them apart
                    x, output = x.expand(n, *x.shape[1:]), output.expand(n, *output.shape[1:])
                    ret = output
                    if check:
                        self.shared.add(id(module))
                        expanded.update(v for v in (w, b) if v is not None)
                if not isinstance(output, torch.Tensor) or x is None or output.shape[0] != n or x.shape[0] != n \
                        or (id(module) in self.shared and not row):
                    bad.update(v for v in (w, b) if v is not None)  # not batch-first: the dense path takes it
                    return None
                calls.append((kind, w, b, module, x.detach(), output, output._version))
                if id(module) in self.cloned:  # its output is changed in place later (ReLU(inplace=True)): the
                    ret = (output if ret is None else ret).clone()  # model goes on with a copy, ours stays z
                return ret
            return hook

        def recorder(names: dict):
            def record(which: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                w, b = names[which]
                if (w is not None or b is not None) and x.shape[0] == n:
                    calls.append(("linear", w, b, None, x.detach(), y, y._version))
                return y
            return record

        for module, names in self.plan.attention:
            both = {v for wb in names.values() for v in wb if v is not None}
            module.forward = exposed(module, recorder(names), check, lambda both=both: bad.update(both))
        hooked = [m.register_forward_hook(hook_for(kind, w, b), with_kwargs=True) for m, kind, w, b in self.plan.hooks]
        named = dict(self.chosen)
        leaves = {k: named[k].detach().expand(n, *named[k].shape).requires_grad_(True) for k in self.standins}
        try:
            with torch.enable_grad():
                try:
                    with warnings.catch_warnings():  # what the user's code says of a stand-in's shape is moot
                        if check and leaves:
                            warnings.simplefilter("ignore")
                        outputs = functional_call(self.model, leaves, args) if leaves else self.model(*args)
                    losses = loss_fn(outputs, targets)
                    if check:
                        check_per_sample_losses(self.owner, losses, n)
                except Exception:  # noqa: BLE001 - retried without stand-ins and expansions: a real error surfaces
                    if not (check and (leaves or expanded)):
                        raise
                    outputs = None  # a stand-in or an expanded row does not fit: the dense path takes them
                modified = {c[3] for c in calls if outputs is not None and c[5]._version != c[6]}
                if modified and check and all(m is not None for m in modified):
                    self.cloned.update(id(m) for m in modified)  # checked again, with copies of those outputs
                    outputs = "again"
                elif modified:  # changed in place where the check saw no such thing: not seen whole
                    bad.update(v for c in calls if c[5]._version != c[6] for v in (c[1], c[2]) if v is not None)
                if outputs is not None and not isinstance(outputs, str):
                    outs = [c[5] for c in calls]
                    live = [i for i, o in enumerate(outs) if o.requires_grad]
                    wrt = [outs[i] for i in live] + list(leaves.values())
                    grads = torch.autograd.grad(losses.sum(), wrt, allow_unused=True, retain_graph=check) \
                        if wrt else []
        finally:
            for h in hooked:
                h.remove()
            for module, _ in self.plan.attention:
                del module.forward  # torch's own forward again
        if isinstance(outputs, str):
            return self.sketch(args, targets, loss_fn, check=check)
        if outputs is None:
            self.shared.clear()
            self._no_expand = True
            self.drop(expanded | set(self.standins))
            return self.sketch(args, targets, loss_fn, check=check)
        if bad and not check:  # a layer the check saw whole does not fit this batch (data-dependent routing)
            raise PlanChanged(bad)
        with torch.autocast(self.device.type, enabled=False):  # the projections in float32, whatever the forward
            got = dict(zip(live, grads[:len(live)]))
            per_sample = {k: torch.zeros((n, *named[k].shape), device=self.device) if g is None else g
                          for k, g in zip(leaves, grads[len(live):])}
            blocks: dict[str, torch.Tensor] = {}
            vecs: dict[str, torch.Tensor] = {}
            for i, (kind, w, b, module, x, _, _) in enumerate(calls):
                g = got.get(i)
                if g is None:
                    continue
                accumulate(kind, w, b, module, x, g, n, self.plan.matrices.get(w), blocks, vecs)
            if not check:  # one [B, dim] sum, no sketch per parameter
                total = torch.zeros(n, self.dim, device=self.device)
                for name, blk in blocks.items():
                    self.plan.matrices[name].mix(blk, into=total)
                for name, v in vecs.items():
                    self.plan.vectors[name].mix(self.plan.vectors[name].side(v, "rows"), into=total)
                for k, g in per_sample.items():
                    total.addmm_(g.reshape(n, -1).to(total.dtype), self._dense_block(k))
                return {"": total}
            out = {name: self.plan.matrices[name].mix(blk) for name, blk in blocks.items()}
            for name, v in vecs.items():
                out[name] = out.get(name, 0) + self.plan.vectors[name].mix(self.plan.vectors[name].side(v, "rows"))
            for k, g in per_sample.items():
                out[k] = g.reshape(n, -1).to(torch.float32) @ self._dense_block(k)
        self._check(args, targets, loss_fn, losses, out, bad, per_sample)
        keep = set(self.plan.matrices) | set(self.plan.vectors) | set(self.standins)
        return {k: v for k, v in out.items() if k in keep}

    def report_dense(self) -> None:
        """A log line naming the parameters the dense (vmap) path sketches: they cost P x dim per example."""
        if self.dense:
            named = dict(self.chosen)
            count = sum(named[k].numel() for k in self.dense)
            log.warning("factorized sketch: %d parameter tensor(s), %s of %s parameters, are not seen whole by the "
                        "layer hooks and go to the dense projection (P x dim per example): %s", len(self.dense),
                        f"{count:,}", f"{sum(p.numel() for _, p in self.chosen):,}", ", ".join(self.dense[:8])
                        + (" ..." if len(self.dense) > 8 else ""))

    def _dense_block(self, name: str) -> torch.Tensor:
        """The dense path's [numel, dim] block for a stand-in, drawn once."""
        if name not in self._r:
            from probekit.selection.grad_sketch import projection_matrix

            block = projection_matrix(self.model, dim=self.dim, seed=self.seed, params=[name])[name]
            self._r[name] = block.to(torch.float32)
        return self._r[name]

    # -- the first batch's check ---------------------------------------------------------
    def _check(self, args, targets, loss_fn, losses, out: dict[str, torch.Tensor], bad: set[str],
               per_sample: dict[str, torch.Tensor]) -> None:
        n = losses.shape[0]
        named = dict(self.chosen)
        handled = list(self.plan.matrices) + list(self.plan.vectors)
        tol = CHECK_TOL.get(torch.get_autocast_dtype(self.device.type) if torch.is_autocast_enabled(
            self.device.type) else named[handled[0]].dtype if handled else torch.float32, 5e-2)
        wrong = set(bad)
        rows = range(n)  # prepare() gives a batch of up to three examples
        for j, i in enumerate(rows if handled else []):
            true = torch.autograd.grad(losses[i], [named[k] for k in handled], allow_unused=True,
                                       retain_graph=j + 1 < len(rows))
            for name, g in zip(handled, true):
                g = torch.zeros_like(named[name]) if g is None else g
                with torch.autocast(self.device.type, enabled=False):
                    if name in self.plan.matrices:
                        ref = self.plan.matrices[name].project(g.unsqueeze(0))[0]
                    else:
                        ref = self.plan.vectors[name].project(g.reshape(1, -1, 1))[0]
                mine = out[name][i] if name in out else torch.zeros_like(ref)
                scale = max(float(ref.norm()), 1e-6 * max(float(mine.norm()), 1e-30))
                if float((mine - ref).norm()) > tol * scale:
                    wrong.add(name)
        if per_sample:  # the stand-ins' gradients against those of the model as it is
            with torch.enable_grad():
                plain = loss_fn(self.model(*args), targets)
            for j, i in enumerate(rows):
                true = torch.autograd.grad(plain[i], [named[k] for k in per_sample], allow_unused=True,
                                           retain_graph=j + 1 < len(rows))
                for name, g in zip(per_sample, true):
                    g = torch.zeros_like(named[name]) if g is None else g
                    mine = per_sample[name][i]
                    if float((mine - g).norm()) > tol * max(float(g.norm()), 1e-6 * float(mine.norm()), 1e-30):
                        wrong.add(name)
        if wrong:
            self.drop(wrong)
        self.report_dense()
        self.checked = True
