"""Name -> class registries, filled from Python entry points (lm-evaluation-harness style).

Built-in and third-party strategies register the same way: an entry point in
the group ``probekit.selectors`` whose value is ``"module:Class"``. Nothing is
imported until a name is used, so ``--help`` and every command that uses one
strategy stay fast (``probekit selectors`` imports them all to describe them,
torch included: ~2 s). A third-party package adds one with, in its pyproject::

    [project.entry-points."probekit.selectors"]
    mine = "my_package.my_selector:MySelector"

Two entry points with the same name (or a ``register`` over an existing name)
are refused. When probekit itself is not installed (a bare source checkout),
the built-in table below stands in for its own entry points; a test keeps it
equal to pyproject.
"""
from __future__ import annotations

import difflib
import importlib
from importlib import metadata
from typing import Any

from probekit.errors import ProbekitError, ProbekitUsageError

BUILTIN_SELECTORS = {
    "cluster": "probekit.selectors.cluster:ClusterSelector",
    "concern": "probekit.selectors.concern:ConcernSelector",
    "gradient": "probekit.selectors.gradient:GradientSelector",
    "mixture": "probekit.selectors.mixture:MixtureSelector",
    "random": "probekit.selectors.random_sampling:RandomSelector",
    "response": "probekit.selectors.response:ResponseSelector",
}


class Registry:
    """A lazily loaded mapping from names to classes for one entry-point group."""

    def __init__(self, group: str, kind: str, builtin: dict[str, str]) -> None:
        self.group = group
        self.kind = kind
        self._builtin = dict(builtin)
        self._targets: dict[str, str | type] | None = None
        self._loaded: dict[str, type] = {}

    def _discover(self) -> dict[str, str | type]:
        if self._targets is None:
            targets: dict[str, str | type] = {}
            sources: dict[str, str] = {}
            own = False
            for ep in metadata.entry_points(group=self.group):
                dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
                own = own or dist == "probekit"
                if ep.name in targets and targets[ep.name] != ep.value:
                    raise ProbekitError(
                        f"two packages register the {self.kind} {ep.name!r}: {sources[ep.name]} "
                        f"({targets[ep.name]}) and {dist} ({ep.value}); uninstall one."
                    )
                targets[ep.name] = ep.value
                sources[ep.name] = dist
            if not own:  # probekit not installed: its own table stands in
                for name, value in self._builtin.items():
                    targets.setdefault(name, value)
            self._targets = targets
        return self._targets

    def names(self) -> list[str]:
        return sorted(self._discover())

    def register(self, name: str, target: str | type) -> None:
        """Add a name at run time (tests, notebooks); an existing name is refused."""
        targets = self._discover()
        if name in targets:
            raise ProbekitUsageError(f"The {self.kind} {name!r} is already registered ({targets[name]}).")
        targets[name] = target

    def unregister(self, name: str) -> None:
        self._discover().pop(name, None)
        self._loaded.pop(name, None)

    def unknown(self, name: Any) -> ProbekitUsageError:
        names = self.names()
        close = difflib.get_close_matches(str(name), names, n=2) if isinstance(name, str) else []
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return ProbekitUsageError(
            f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(names)}."
        )

    def load(self, name: str) -> type:
        targets = self._discover()
        if not isinstance(name, str) or name not in targets:
            raise self.unknown(name)
        if name not in self._loaded:
            target = targets[name]
            if isinstance(target, str):
                module_name, _, attr = target.partition(":")
                try:
                    target = getattr(importlib.import_module(module_name), attr)
                except (ImportError, AttributeError) as exc:
                    raise ProbekitError(
                        f"the {self.kind} {name!r} could not be loaded from {targets[name]!r}: {exc}"
                    ) from exc
            self._loaded[name] = target
        return self._loaded[name]

    def ordered_names(self) -> list[str]:
        """The built-ins in their own (declared) order, then every other registered name, sorted."""
        registered = self.names()
        return [n for n in self._builtin if n in registered] + [n for n in registered if n not in self._builtin]

    # -- registries of declarations (signals, export formats): objects with a ``name``, not classes
    def declaration(self, name: str, kind: type) -> Any:
        """The object registered as ``name``, which must be a ``kind`` of that name."""
        spec = self.load(name)
        if not isinstance(spec, kind) or getattr(spec, "name", None) != name:
            got = f"one named {spec.name!r}" if isinstance(spec, kind) else type(spec).__name__
            raise ProbekitError(
                f"the {self.kind} {name!r} must be registered as {_a(kind.__name__)} named {name!r}. Got {got} instead.")
        return spec

    def register_declaration(self, spec: Any, kind: type) -> None:
        """Add a declaration at run time (tests, notebooks); a name already registered is refused."""
        if not isinstance(spec, kind):
            raise ProbekitUsageError(
                f"Registering {_a(self.kind)} needs {_a(kind.__name__)}. Got {type(spec).__name__} instead.")
        self.register(spec.name, spec)

    def describe(self, name: str) -> str:
        """First line of the class docstring."""
        doc = (self.load(name).__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


def _a(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


SELECTORS = Registry("probekit.selectors", "selector", BUILTIN_SELECTORS)

BUILTIN_TRANSITIONS = {
    "deep-linear": "probekit.eval.families.deep_linear:DeepLinear",
    "deep-linear-null": "probekit.eval.families.deep_linear:DeepLinearNull",
    "grokking": "probekit.eval.families.grokking:Grokking",
    "grokking-null": "probekit.eval.families.grokking:GrokkingNull",
    "induction-heads": "probekit.eval.families.induction_heads:InductionHeads",
    "induction-heads-null": "probekit.eval.families.induction_heads:InductionHeadsNull",
    "late-bias": "probekit.eval.families.late_bias:LateBias",
    "late-bias-null": "probekit.eval.families.late_bias:LateBiasNull",
    "misalignment": "probekit.eval.families.misalignment:EmergentMisalignment",
    "misalignment-null": "probekit.eval.families.misalignment:EmergentMisalignmentNull",
    "rare-drift": "probekit.eval.families.rare_drift:RareDrift",
    "rare-drift-null": "probekit.eval.families.rare_drift:RareDriftNull",
}

#: Reference runs (``probekit.eval``), group ``probekit.transitions``.
TRANSITIONS = Registry("probekit.transitions", "reference run", BUILTIN_TRANSITIONS)

BUILTIN_ALARM_RULES = {
    "kendall": "probekit.alarms.kendall:KendallTrend",
    "running-min": "probekit.alarms.running_min:RunningMinRatio",
    "zscore": "probekit.alarms.zscore:RobustZScore",
}

#: Alarm rules (``probekit.alarms``), group ``probekit.alarm_rules``; ``probekit.alarms.make_rule``
#: builds them by name, and ``probekit.alarms.ALARM_RULES`` is a read-only view of this registry.
ALARMS = Registry("probekit.alarm_rules", "alarm rule", BUILTIN_ALARM_RULES)

# Export formats: one declaration each (name, suffix, pool, options, writer, reader); the order
# here is the order `probekit export --help` lists the built-ins in.
BUILTIN_EXPORT_FORMATS = {
    "jsonl": "probekit.export.formats:JSONL",
    "csv": "probekit.export.formats:CSV",
    "datasets": "probekit.export.formats:DATASETS",
    "npy": "probekit.export.formats:NPY",
    "lm-eval": "probekit.export.formats:LM_EVAL",
}

#: Export formats (``probekit export``, ``probekit.export.export``), group ``probekit.export_formats``;
#: each entry is a ``probekit.export.formats.ExportFormat``.
EXPORT_FORMATS = Registry("probekit.export_formats", "export format", BUILTIN_EXPORT_FORMATS)

# 2RDM signals: each declared once in probekit/rdm/signal_table.py; listed (and offered) in this order.
BUILTIN_SIGNALS = {
    "shc": "probekit.rdm.signal_table:SHC",
    "inv_pr": "probekit.rdm.signal_table:INV_PR",
    "leading_share": "probekit.rdm.signal_table:LEADING_SHARE",
    "trace": "probekit.rdm.signal_table:TRACE",
    "lambda_1": "probekit.rdm.signal_table:LAMBDA_1",
}

#: 2RDM signals (``probekit.rdm.signal_table.Signal`` instances), group ``probekit.signals``:
#: what ``probekit analyze --signal``, ``Monitor(signal=...)`` and the bench's ``SignalSpec`` accept.
SIGNALS = Registry("probekit.signals", "signal", BUILTIN_SIGNALS)


def make_selector(name: str, **params: Any) -> Any:
    """Instantiate the registered selector ``name``; unknown parameters are refused."""
    cls = SELECTORS.load(name)
    valid = cls._param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ProbekitUsageError(
            f"Invalid parameter {unknown[0]!r} for selector {name!r} ({cls.__name__}). "
            f"Valid parameters: {', '.join(valid) or '(none)'}."
        )
    return cls(**params)
