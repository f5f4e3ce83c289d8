"""The benchmark grid: families x designs x sizes x seeds, and the signal and rule axes.

A **cell** is one (family, design, signal, rule): the design's nested selection on
every seed's trajectory (and on each seed's null control, so false alarms are
measured with the same probes), scored at every prefix size and on the full
pool (``probekit.eval.scoring.convergence``). Scalar baselines are cells too (their
design is the full pool's mean loss, or the stored gradient norm). :class:`BenchGrid`
says which cells there are; :mod:`probekit.eval.bench.run` computes them.

Nothing here lists families or designs: the families are the registered transition families
(``probekit.transitions`` entry points), and a design is any registered selection strategy
(``probekit.eval.bench.designs``), filled with what its family declares it offers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from probekit.eval.bench.designs import Design, parse_design
from probekit.eval.scoring.signals import SCALAR_SIGNALS, SignalSpec

__all__ = ["DESIGNS", "FULL", "QUICK", "BenchGrid", "Design", "RuleSpec", "transition_families"]

#: The grid's default designs (gradient sketches of 64 dimensions: the cost of the full grid).
DESIGNS = (Design("random"), Design("cluster"), Design("gradient", (("sketch_dim", 64),), name="gradient"))


def transition_families() -> tuple[str, ...]:
    """Every registered transition family (their null controls are found by ``control_of``)."""
    from probekit.registry import TRANSITIONS

    return tuple(n for n in TRANSITIONS.names() if TRANSITIONS.load(n).kind == "transition")


@dataclass(frozen=True)
class RuleSpec:
    """An alarm rule of the grid: a registered name and its parameters (the threshold is swept)."""

    name: str = "running-min"
    params: tuple[tuple[str, Any], ...] = ()

    def make(self) -> Any:
        from probekit.alarms import make_rule

        return make_rule(self.name, **dict(self.params))

    @property
    def label(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.params)
        return f"{self.name}({inner})" if inner else self.name

    @property
    def tag(self) -> str:  # for file names
        return self.name + "".join(f"-{k}{v}" for k, v in self.params)

    def as_dict(self) -> dict:
        return {"name": self.name, "params": {k: v for k, v in self.params}}

    @staticmethod
    def from_dict(d: dict) -> "RuleSpec":
        params = d["params"].items() if isinstance(d["params"], dict) else d["params"]
        return RuleSpec(d["name"], tuple((k, v) for k, v in params))


@dataclass(frozen=True)
class BenchGrid:
    """What the benchmark scores. ``families``: transition families (their nulls are found by
    ``control_of``); empty means every registered one (:meth:`with_families`). ``designs``:
    :class:`Design` objects, or their text form (``"gradient:sketch_dim=64"``)."""

    families: tuple[str, ...] = ()
    preset: str = "small"
    seeds: tuple[int, ...] = (0, 1, 2)
    designs: tuple[Design, ...] = DESIGNS
    sizes: tuple[int, ...] = (8, 32)
    signals: tuple[SignalSpec, ...] = (SignalSpec("shc", window=16),)
    scalar_baselines: tuple[str, ...] = SCALAR_SIGNALS
    rules: tuple[RuleSpec, ...] = (RuleSpec(),)  # the first is the report's primary rule
    hit_fraction: float = 0.5
    # peer signals (probekit.eval.peers: "llc", "llc_dev"; needs probekit[peers]); their cells
    # name their own settings, so adding peers to a grid reuses its other cells
    peers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        designs = tuple(d if isinstance(d, Design) else _design_from_text(d) for d in self.designs)
        object.__setattr__(self, "designs", designs)
        object.__setattr__(self, "families", tuple(self.families))

    def with_families(self) -> "BenchGrid":
        """This grid, on every registered transition family when it names none."""
        return self if self.families else dataclasses.replace(self, families=transition_families())

    def design(self, label: str) -> Design:
        return next(d for d in self.designs if d.label == label)

    def key(self) -> str:
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "peers"}
        text = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def cells(self) -> list[dict]:
        """Every cell, in report order: per family, signal x rule x design, then the scalar baselines."""
        out = []
        for fam in self.families:
            for spec in self.signals:
                for rule in self.rules:
                    for design in self.designs:
                        out.append({"family": fam, "design": design.label, "signal": dataclasses.asdict(spec),
                                    "rule": rule.as_dict()})
            for scalar in self.scalar_baselines:  # on the primary signal's window and stride
                spec = SignalSpec(scalar, window=self.signals[0].window, stride=self.signals[0].stride)
                for rule in self.rules:
                    out.append({"family": fam, "design": "scalar", "signal": dataclasses.asdict(spec),
                                "rule": rule.as_dict()})
        if self.peers:
            from probekit.eval.peers.scoring import peer_cells

            out += peer_cells(self)
        return out

    def check(self) -> None:
        from probekit.errors import ProbekitUsageError
        from probekit.eval.scoring.signals import PEER_SIGNALS

        for design in self.designs:
            design.check()
        labels = [d.label for d in self.designs]
        if len(set(labels)) != len(labels):
            raise ProbekitUsageError(f"The designs of a BenchGrid need distinct names. Got {labels} instead.")

        bad = [p for p in self.peers if p not in PEER_SIGNALS]
        if bad:
            raise ProbekitUsageError(
                f"The 'peers' field of BenchGrid must hold some of {', '.join(PEER_SIGNALS)}. Got {bad[0]!r} instead.")


def _design_from_text(text: str) -> Design:
    """A design's text form, parsed without looking the strategy up (``check`` does, before any work)."""
    return parse_design(text, check=False)


QUICK = BenchGrid()  # every registered transition family
FULL = BenchGrid(
    preset="default",
    seeds=(0, 1, 2, 3, 4),
    sizes=(8, 16, 32, 64, 128, 256),
    # the signal axes: window W (16, 32, 64), record stride (every 2nd record, W=16: the same span as
    # W=32), detrending (a linear trend per probe, first differences) and the statistic (SHC, 1 / PR)
    signals=(
        SignalSpec("shc", window=32),
        SignalSpec("shc", window=16),
        SignalSpec("shc", window=64),
        SignalSpec("shc", window=16, stride=2),
        SignalSpec("shc", window=32, detrend="linear"),
        SignalSpec("shc", window=32, detrend="diff"),
        SignalSpec("inv_pr", window=32),
    ),
    # the rule axis: the ratio to the running minimum (all history, and a trailing 64 records that
    # re-arms after a transition), and the robust z-score of log-SHC and of raw SHC
    rules=(
        RuleSpec("running-min"),
        RuleSpec("running-min", (("memory", 64),)),
        RuleSpec("zscore", (("transform", "log"),)),
        RuleSpec("zscore", (("transform", "none"),)),
    ),
)
