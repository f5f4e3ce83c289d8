"""The benchmark grid: families x designs x sizes x seeds, and the signal and rule axes.

A **cell** is one (family, design, signal, rule): the design's nested selection on
every seed's trajectory (and on each seed's null control, so false alarms are
measured with the same probes), scored at every prefix size and on the full
pool (``probekit.eval.scoring.convergence``). Scalar baselines are cells too (their
design is the full pool's mean loss, or the stored gradient norm). :class:`BenchGrid`
says which cells there are; :mod:`probekit.eval.bench.run` computes them.

Nothing here lists families or designs: the families are the registered transition families
(``probekit.transitions`` entry points), and a design is any registered selection strategy
(``probekit.eval.bench.designs``), filled with what its family declares it offers. A design can
stand for several on a family (:meth:`BenchGrid.designs_for`): ``concern`` is scored once per
concern the family declares (``concern[rare]``), and ``response`` reads the family's pilot span.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from probekit.eval.bench.designs import Design, parse_design
from probekit.eval.bench.user_runs import UserTrajectory
from probekit.eval.scoring.signals import SCALAR_SIGNALS, SignalSpec

__all__ = ["DESIGNS", "FULL", "QUICK", "BenchGrid", "Design", "RuleSpec", "transition_families"]

#: The grid's default designs: every built-in strategy (gradient sketches of 64 dimensions: the cost of
#: the full grid). ``concern`` is scored on each concern a family declares; ``response`` on the family's
#: pilot span; ``mixture``: embedding coverage with a quarter on the concern (one mixture per concern).
DESIGNS = (
    Design("random"),
    Design("cluster"),
    Design("gradient", (("sketch_dim", 64),), name="gradient"),
    Design("concern"),
    Design("response"),
    Design("mixture", (("components", "cluster:0.75,concern:0.25"),), name="mixture"),
)


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
    # the seeds of the null controls (each one quiet unit); empty: the same as ``seeds``. Null runs
    # are what a false-alarm rate rests on, so a grid may afford more of them than of transitions.
    null_seeds: tuple[int, ...] = ()
    # the user's own runs (``probekit record`` trajectories), each a family of its own named by its
    # trajectory (probekit.eval.bench.user_runs): its seeds are selection seeds on that one run
    trajectories: tuple[UserTrajectory, ...] = ()

    def __post_init__(self) -> None:
        designs = tuple(d if isinstance(d, Design) else _design_from_text(d) for d in self.designs)
        object.__setattr__(self, "designs", designs)
        object.__setattr__(self, "families", tuple(self.families))
        object.__setattr__(self, "null_seeds", tuple(self.null_seeds))
        users = tuple(u if isinstance(u, UserTrajectory) else _user_from_dict(u) for u in self.trajectories)
        object.__setattr__(self, "trajectories", users)

    @property
    def control_seeds(self) -> tuple[int, ...]:
        """The seeds the null controls run with."""
        return self.null_seeds or self.seeds

    def pilot_for(self, family: str) -> int:
        """Records at the start of every run of ``family`` that no cell scores: the longest pilot span
        of its designs (what ``response`` selects on), applied to every design and baseline alike so
        that they are compared on the same records and the same quiet units."""
        return max((d.pilot for d in self.designs_for(family)), default=0)

    def with_families(self) -> "BenchGrid":
        """This grid, on every registered transition family when it names none and scores no user
        trajectory; a user trajectory's family (its name) is always one of them."""
        families = self.families or (() if self.trajectories else transition_families())
        families = tuple(dict.fromkeys(families + tuple(u.name for u in self.trajectories)))
        return self if families == self.families else dataclasses.replace(self, families=families)

    def preset_of(self, family: str) -> str:
        """The preset ``family``'s designs are made for: the grid's, or a user trajectory's own."""
        from probekit.eval.bench.user_runs import USER_PRESET, user_family

        return USER_PRESET if user_family(self, family) is not None else self.preset

    def open_runs(self, family: str, cache_dir: Any = None) -> tuple[list, list]:
        """The family's trajectories (one per seed) and its null controls' (one per null seed): from the
        cache (recorded if missing), or, for a user trajectory, from its directories."""
        from probekit.eval.bench.user_runs import open_user_runs, user_family

        user = user_family(self, family)
        if user is not None:
            return open_user_runs(user, self.seeds, self.control_seeds)
        from probekit.eval.store.runner import load_or_record
        from probekit.registry import TRANSITIONS

        null_names = [n for n in TRANSITIONS.names() if TRANSITIONS.load(n).control_of == family]
        trajs = [load_or_record(family, self.preset, s, cache_dir=cache_dir, progress=False) for s in self.seeds]
        nulls = [load_or_record(n, self.preset, s, cache_dir=cache_dir, progress=False)
                 for n in null_names for s in self.control_seeds]
        return trajs, nulls

    def designs_for(self, family: str) -> tuple[Design, ...]:
        """The designs scored on ``family``, in grid order: each of ``designs`` as the family makes
        it (:meth:`Design.for_family`: one per concern, the family's pilot span)."""
        from probekit.eval.bench.user_runs import family_class

        run = family_class(self, family)
        skip = getattr(run, "unscored", {})  # a user's recording some strategies cannot run on (user_runs)
        return tuple(d for design in self.designs if design.strategy not in skip
                     for d in design.for_family(run, self.preset_of(family)))

    def design(self, label: str, family: str | None = None) -> Design:
        """The design labelled ``label`` on ``family``. Without a family: on any of the grid's
        families, if that label means one design on all of them (a design given the family's pilot
        span, like ``response``, differs by family: name the family)."""
        if family is not None:
            found = [d for d in self.designs_for(family) if d.label == label]
        else:
            found = [d for d in self.designs if d.label == label and not d.expands_by_concern() and not d.needs_pilot()]
            if not found:
                found = list(dict.fromkeys(d for fam in self.with_families().families
                                           for d in self.designs_for(fam) if d.label == label))
        if len(found) != 1:
            from probekit.errors import ProbekitUsageError

            where = f"family {family!r}" if family is not None else "the grid's families"
            problem = "differs by family; name the family" if found else "is not a design of the grid there"
            raise ProbekitUsageError(f"Design {label!r} {problem} ({where}).")
        return found[0]

    def key(self) -> str:
        """A hash of what the grid computes (its peers aside, which name their own cells): its fields,
        and the designs each family makes of its designs where they differ from them (concerns,
        pilot spans), so a change to a family's concerns is a new grid. Deterministic."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "peers"}
        if not fields["null_seeds"]:
            del fields["null_seeds"]  # the same as the seeds: hashes as before the field existed
        if self.trajectories:  # by content, not by path: a moved trajectory is the same grid
            fields["trajectories"] = [u.content() for u in self.trajectories]
        else:
            del fields["trajectories"]  # hashes as before the field existed
        for d in fields["designs"]:  # a design without a pilot hashes as before pilots existed
            if not d.get("pilot"):
                d.pop("pilot", None)
        expanded = {}
        for fam in self.families:
            made = self.designs_for(fam)
            if made != self.designs:
                expanded[fam] = [d.as_dict() for d in made]
        if expanded:
            fields["expanded"] = expanded
        text = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def cells(self) -> list[dict]:
        """Every cell, in report order: per family, signal x rule x design, then the scalar baselines."""
        out = []
        for fam in self.families:
            for spec in self.signals:
                for rule in self.rules:
                    for design in self.designs_for(fam):
                        out.append({"family": fam, "design": design.label, "signal": dataclasses.asdict(spec),
                                    "rule": rule.as_dict()})
            for scalar in self._scalars(fam):  # on the primary signal's window and stride
                spec = SignalSpec(scalar, window=self.signals[0].window, stride=self.signals[0].stride)
                for rule in self.rules:
                    out.append({"family": fam, "design": "scalar", "signal": dataclasses.asdict(spec),
                                "rule": rule.as_dict()})
        if self.peers:
            from probekit.eval.peers.scoring import peer_cells

            out += peer_cells(self)
        return out

    def _scalars(self, family: str) -> tuple[str, ...]:
        """The scalar baselines of ``family``: a user's recording holds no training gradients, so no
        ``grad_norm`` there."""
        from probekit.eval.bench.user_runs import user_family

        if user_family(self, family) is None:
            return self.scalar_baselines
        return tuple(s for s in self.scalar_baselines if s != "grad_norm")

    def check(self) -> None:
        from probekit.errors import ProbekitUsageError
        from probekit.eval.scoring.signals import PEER_SIGNALS

        for design in self.designs:
            design.check()
        names = [u.name for u in self.trajectories]
        for user in self.trajectories:
            user.check()
            if user.name in transition_families() or names.count(user.name) > 1:
                raise ProbekitUsageError(f"--trajectory {user.path}: its name {user.name!r} is taken (by a reference "
                                         "family or another trajectory); record it with another --name.")
        labels = [d.label for d in self.designs]
        if len(set(labels)) != len(labels):
            raise ProbekitUsageError(f"The designs of a BenchGrid need distinct names. Got {labels} instead.")
        for fam in self.with_families().families:  # what each family makes of them: concerns, pilot spans
            made = self.designs_for(fam)
            for design in made:
                design.check()
            labels = [d.label for d in made]
            if len(set(labels)) != len(labels):
                raise ProbekitUsageError(
                    f"The designs of a BenchGrid need distinct names on each family. Got {labels} on {fam!r} instead.")

        bad = [p for p in self.peers if p not in PEER_SIGNALS]
        if bad:
            raise ProbekitUsageError(
                f"The 'peers' field of BenchGrid must hold some of {', '.join(PEER_SIGNALS)}. Got {bad[0]!r} instead.")


def _user_from_dict(d: dict) -> UserTrajectory:
    """A user trajectory as ``results.json`` holds it."""
    return UserTrajectory(d["path"], tuple(d.get("nulls", ())),
                          tuple((n, tuple(specs)) for n, specs in d.get("concerns", ())), d.get("pilot"))


def _design_from_text(text: str) -> Design:
    """A design's text form, parsed without looking the strategy up (``check`` does, before any work)."""
    return parse_design(text, check=False)


QUICK = BenchGrid()  # every registered transition family
FULL = BenchGrid(
    preset="default",
    # enough runs for a rate and a test to mean something: >= 40 quiet units per family (30 null runs +
    # the transitions' quiet periods), and 20 seeds, so that a design better than random on every seed
    # survives Holm over a family's ~84 comparisons (2 / 2^20 << 0.05 / 84; with 10 seeds it could not)
    seeds=tuple(range(20)),
    null_seeds=tuple(range(30)),
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
