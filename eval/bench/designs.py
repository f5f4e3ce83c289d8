"""Probe designs of the benchmark: any registered selection strategy, with its parameters.

A :class:`Design` names a strategy of the selector registry (built-in or registered by another
package through the ``probekit.selectors`` entry points) and the parameters the grid gives it.
What a design needs from a family (the input column, the selection-time model, the loss) is
declared by the family (``ReferenceRun.design_fields`` and ``design_context``), not here: a
selector parameter is filled from the family when the selector takes it and the design does not
set it, and of a group of alternatives (``Selector.alternatives``) only the first the family
offers. So a new strategy is benchmarked with no edit to probekit::

    probekit bench --designs random cluster my_strategy:k=8 gradient:sketch_dim=64

Text form: ``NAME`` or ``NAME:KEY=VALUE,KEY=VALUE`` (values as ``--param`` reads them: numbers,
true/false, none, JSON); a comma starts a new parameter only where ``KEY=`` follows, so
``mixture:components=cluster:0.75,random:0.25`` is one parameter.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from probekit.errors import ProbekitUsageError

__all__ = ["Design", "parse_design"]

# The grid's designs that cannot be selector names: cells of the scalar baselines and peer signals.
RESERVED = ("scalar", "peer")


@dataclass(frozen=True)
class Design:
    """A registered strategy with the parameters the grid gives it; ``name`` labels its cells."""

    strategy: str
    params: tuple[tuple[str, Any], ...] = ()
    name: str = ""  # default: the strategy, with its parameters in brackets

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        inner = ",".join(f"{k}={v}" for k, v in self.params)
        return f"{self.strategy}({inner})" if inner else self.strategy

    def as_dict(self) -> dict:
        return {"strategy": self.strategy, "params": {k: v for k, v in self.params}, "name": self.label}

    def check(self) -> None:
        """The strategy is registered and takes these parameters (before any work)."""
        from probekit.registry import SELECTORS

        if self.strategy in RESERVED:
            raise ProbekitUsageError(f"{self.strategy!r} names the grid's {self.strategy} cells, not a design.")
        cls = SELECTORS.load(self.strategy)  # an unknown name: "Did you mean ...?"
        accepted = set(cls._param_names())
        unknown = [k for k, _ in self.params if k not in accepted]
        if unknown:
            raise ProbekitUsageError(
                f"Invalid parameter {unknown[0]!r} for design {self.label!r} (strategy {self.strategy!r}). "
                f"Valid parameters: {', '.join(sorted(accepted)) or '(none)'}.")
        if not re.fullmatch(r"[\w.,=()\[\]:+-]+", self.label):
            raise ProbekitUsageError(f"A design's name must be usable in a file name. Got {self.label!r} instead.")

    def selector(self, run: Any, traj: Any) -> Any:
        """The selector for one trajectory of ``run``'s family: the design's parameters, then what
        the family offers for the parameters the selector takes and the design leaves unset."""
        from probekit.registry import SELECTORS, make_selector

        cls = SELECTORS.load(self.strategy)
        params = dict(self.params)
        accepted = cls._param_names()
        offered = run.design_context(traj)
        grouped = {p for group in cls.alternatives for p in group}
        for group in cls.alternatives:
            if any(p in params for p in group):
                continue  # the design chose its own input
            first = next((p for p in group if p in accepted and p in offered), None)
            if first is not None:
                params[first] = offered[first]()
        for name in accepted:
            if name not in params and name not in grouped and name in offered:
                params[name] = offered[name]()
        return make_selector(self.strategy, **params)

    def ranking(self, run: Any, traj: Any, n: int) -> list[str]:
        """The design's nested selection of ``n`` probes (at most the pool) on ``traj``, seeded by its seed."""
        pool = traj.pool
        return list(self.selector(run, traj).select(pool, min(n, len(pool)), seed=traj.seed).ids)


_PARAM_START = re.compile(r",(?=\s*[A-Za-z_]\w*\s*=)")


def parse_design(text: str, check: bool = True) -> Design:
    """``NAME`` or ``NAME:KEY=VALUE,...`` -> a :class:`Design` (checked against the registry unless told not to)."""
    from probekit.cli.common import parse_key_values

    strategy, sep, rest = str(text).strip().partition(":")
    if not strategy:
        raise ProbekitUsageError(f"--designs takes NAME or NAME:KEY=VALUE,...; got {text!r}.")
    params: dict[str, Any] = {}
    if sep:
        if not rest.strip():
            raise ProbekitUsageError(f"--designs {text!r}: no parameters after ':' (NAME:KEY=VALUE,...).")
        params = parse_key_values([p for p in _PARAM_START.split(rest)], f"--designs {strategy}")
    design = Design(strategy, tuple(params.items()))
    if check:
        design.check()
    return design
