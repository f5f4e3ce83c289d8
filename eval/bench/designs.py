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
``mixture:components=cluster:0.75,random:0.25`` is one parameter. ``pilot=P`` is the design's own
pilot span, not a selector parameter (``response:pilot=12``).

What a family declares also shapes the design on it (:meth:`Design.for_family`):

- **concerns**: a design whose strategy takes ``slices`` and whose params do not set them
  (``concern``, a ``mixture`` with a concern part) stands for one design per concern the family
  declares (``ReferenceRun.concerns``), labelled ``LABEL[CONCERN]``: ``concern[rare]``;
- **pilot**: a design whose strategy reads pilot loss trajectories (takes ``trajectory_field``)
  and that sets neither them nor its pilot gets the family's pilot span for the grid's preset
  (``ReferenceRun.pilot_records``). Its selector sees the losses of those first records only, and
  :attr:`Design.pilot` tells the scoring to count its alarms after them.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

from probekit.errors import ProbekitUsageError

__all__ = ["Design", "parse_design"]

# The grid's designs that cannot be selector names: cells of the scalar baselines and peer signals.
RESERVED = ("scalar", "peer")
#: The selector parameter through which a family's concerns reach a design.
SLICES_PARAM = "slices"
#: The selector parameter of strategies that read pilot loss trajectories (a pool column's name).
PILOT_PARAM = "trajectory_field"
#: What a concern's name may hold (it becomes part of design labels and cell file names).
CONCERN_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Design:
    """A registered strategy with the parameters the grid gives it; ``name`` labels its cells.

    ``pilot``: records at the start of every run that the design reads at selection time (its
    pilot span; 0: none). The scoring counts its alarms only after them."""

    strategy: str
    params: tuple[tuple[str, Any], ...] = ()
    name: str = ""  # default: the strategy, with its parameters (and pilot) in brackets
    pilot: int = 0

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        inner = ",".join(f"{k}={v}" for k, v in self.params) + (f",pilot={self.pilot}" if self.pilot else "")
        inner = inner.lstrip(",")
        return f"{self.strategy}({inner})" if inner else self.strategy

    def as_dict(self) -> dict:
        out = {"strategy": self.strategy, "params": {k: v for k, v in self.params}, "name": self.label}
        return {**out, "pilot": self.pilot} if self.pilot else out

    def _accepted(self) -> list[str]:
        from probekit.registry import SELECTORS

        return list(SELECTORS.load(self.strategy)._param_names())

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
        if isinstance(self.pilot, bool) or not isinstance(self.pilot, int) or self.pilot < 0:
            raise ProbekitUsageError(
                f"The pilot of design {self.label!r} must be an int >= 0 (records). Got {self.pilot!r} instead.")
        if not re.fullmatch(r"[\w.,=()\[\]:+-]+", self.label):
            raise ProbekitUsageError(f"A design's name must be usable in a file name. Got {self.label!r} instead.")

    # -- what a family makes of it ------------------------------------------------------------
    def _unset_in_some_part(self, param: str, alternatives: tuple[str, ...] = ()) -> bool:
        """Whether the design's strategy takes ``param`` and the design leaves it (and its
        ``alternatives``) unset; for a mixture, whether one of its components does."""
        from probekit.registry import SELECTORS
        from probekit.selectors.mixture import MixtureSelector, parse_components

        params = dict(self.params)
        if param not in self._accepted() or {param, *alternatives} & set(params):
            return False
        cls = SELECTORS.load(self.strategy)
        if not issubclass(cls, MixtureSelector):
            return True
        components = parse_components(params.get("components", cls().components))
        return any(param in SELECTORS.load(c.strategy)._param_names() and not {param, *alternatives} & set(c.params)
                   for c in components)

    def expands_by_concern(self) -> bool:
        """Whether the design stands for one design per concern of a family: its strategy takes
        ``slices`` and its params leave them unset (a mixture: one of its components does)."""
        return self._unset_in_some_part(SLICES_PARAM)

    def needs_pilot(self) -> bool:
        """Whether the design takes its family's pilot span: its strategy (a mixture: one of its
        components) reads pilot trajectories (takes ``trajectory_field``), it sets neither their
        source nor its own pilot."""
        return not self.pilot and self._unset_in_some_part(PILOT_PARAM, ("losses_file",))

    def for_family(self, run: Any, preset: str) -> tuple["Design", ...]:
        """The designs this one stands for on ``run``'s family (a ReferenceRun class or instance)
        at ``preset``, in the family's concern order: one per concern (none when the family declares
        none) for a design that :meth:`expands_by_concern`; with the family's pilot span for one that
        :meth:`needs_pilot`; else the design itself."""
        designs = [self]
        if self.expands_by_concern():
            concerns = dict(getattr(run, "concerns", {}) or {})
            for concern in concerns:
                if not isinstance(concern, str) or not CONCERN_NAME.fullmatch(concern):
                    raise ProbekitUsageError(
                        f"The concerns of reference run {run.name!r} need names of letters, digits, '_' and '-'. "
                        f"Got {concern!r} instead.")
            designs = [dataclasses.replace(self, params=self.params + ((SLICES_PARAM, _specs(concerns[c], run, c)),),
                                           name=f"{self.label}[{c}]") for c in concerns]
        if self.needs_pilot():
            declared = getattr(run, "pilot_records", {}) or {}
            if preset not in declared:
                raise ProbekitUsageError(
                    f"Design {self.label!r} reads a pilot run, but reference run {run.name!r} declares no pilot span "
                    f"for preset {preset!r} (pilot_records: {dict(declared) or 'none'}); give the design one "
                    f"({self.strategy}:pilot=RECORDS).")
            designs = [dataclasses.replace(d, pilot=int(declared[preset]), name=d.label) for d in designs]
        return tuple(designs)

    # -- selection -----------------------------------------------------------------------------
    def selector(self, run: Any, traj: Any, context: dict | None = None) -> Any:
        """The selector for one trajectory of ``run``'s family: the design's parameters, then what
        the family offers (``context``: ``run.design_context``) for the parameters the selector
        takes and the design leaves unset."""
        from probekit.registry import SELECTORS, make_selector

        cls = SELECTORS.load(self.strategy)
        params = dict(self.params)
        accepted = cls._param_names()
        offered = context if context is not None else self.context(run, traj)
        from probekit.selectors.mixture import SHARED, MixtureSelector

        mixture = issubclass(cls, MixtureSelector)

        def takes(name: str) -> bool:  # a mixture takes what one of its components does
            return name in accepted and not (mixture and name in SHARED and not self._unset_in_some_part(name))

        grouped = {p for group in cls.alternatives for p in group}
        for group in cls.alternatives:
            if any(p in params for p in group):
                continue  # the design chose its own input
            first = next((p for p in group if takes(p) and p in offered), None)
            if first is not None:
                params[first] = offered[first]()
        for name in accepted:
            if name not in params and name not in grouped and name in offered and takes(name):
                params[name] = offered[name]()
        return make_selector(self.strategy, **params)

    def context(self, run: Any, traj: Any) -> dict:
        """What ``run``'s family offers this design on ``traj`` (its pilot's losses when it has one)."""
        return run.design_context(traj, pilot=self.pilot) if self.pilot else run.design_context(traj)

    def ranking(self, run: Any, traj: Any, n: int) -> list[str]:
        """The design's nested selection of ``n`` probes (at most the pool) on ``traj``, seeded by its
        seed. A design with a pilot selects from the pool plus a column of each row's pilot losses
        (the first ``pilot`` records: what exists at selection time)."""
        pool = traj.pool
        context = self.context(run, traj)
        if self.pilot:
            from probekit.eval.families.base import PILOT_COLUMN
            from probekit.pool import Pool

            data = pool.dataset  # the pilot's losses replace any column of that name
            data = data.remove_columns(PILOT_COLUMN) if PILOT_COLUMN in data.column_names else data
            pool = Pool(data.add_column(PILOT_COLUMN, context[PILOT_COLUMN]()), pool.id_field)
        return list(self.selector(run, traj, context).select(pool, min(n, len(pool)), seed=traj.seed).ids)


def _specs(specs: Any, run: Any, concern: str) -> tuple[str, ...]:
    """A concern's slice specs as a tuple of strings (dict specs as their JSON, which the slice grammar
    reads), so a design's params stay hashable and print in its key."""
    specs = [specs] if isinstance(specs, (str, dict)) else list(specs or ())
    if not specs:
        raise ProbekitUsageError(f"Concern {concern!r} of reference run {run.name!r} names no slice spec.")
    return tuple(s if isinstance(s, str) else json.dumps(s, sort_keys=True) for s in specs)


_PARAM_START = re.compile(r",(?=\s*[A-Za-z_]\w*\s*=)")


def parse_design(text: str, check: bool = True) -> Design:
    """``NAME`` or ``NAME:KEY=VALUE,...`` -> a :class:`Design` (checked against the registry unless told
    not to); ``pilot=P`` sets the design's pilot span."""
    from probekit.cli.common import parse_key_values

    strategy, sep, rest = str(text).strip().partition(":")
    if not strategy:
        raise ProbekitUsageError(f"--designs takes NAME or NAME:KEY=VALUE,...; got {text!r}.")
    params: dict[str, Any] = {}
    if sep:
        if not rest.strip():
            raise ProbekitUsageError(f"--designs {text!r}: no parameters after ':' (NAME:KEY=VALUE,...).")
        params = parse_key_values([p for p in _PARAM_START.split(rest)], f"--designs {strategy}")
    pilot = params.pop("pilot", 0)
    design = Design(strategy, tuple(params.items()), pilot=pilot)
    if check:
        design.check()
    return design
