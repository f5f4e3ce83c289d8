"""A benchmark cell as a type: written and read here, and nowhere else.

A :class:`Cell` is one (family, design, signal, rule) of the grid with its scores, one
:class:`Point` per probe-set size (``size`` 0: the full pool). The report, the peer report and
the figures read cells through these types; ``to_json`` / ``from_json`` are the only places
that know the JSON layout, which carries :data:`SCHEMA_VERSION`.

JSON layout of a cell (keys sorted when written)::

    {"schema_version": 3, "family", "design", "signal": {statistic, window, stride, detrend},
     "rule": {"name", "params"}, "points": [point, ...], "error": str | null,
     ["traceback"],                                                     # a failed cell
     ["llc", "llc_seconds", "llc_source", "checkpoint_rule", "costs"]}  # peer cells

A design's rankings (the probe ids it selected, in rank order, on each run it was scored on)
are shared by all its cells and stored once per (family, design): :class:`Rankings`.

A point holds two scores at one threshold, matched to a 5% false-alarm rate over the quiet units:
*warning* (``AtFAR.detection``, ``leads``: an alarm in the hit window, before the onset) and
*detection* (``AtFAR.detected``, ``latencies``: the first alarm from the hit window on, by the
transition's midpoint; latency = alarm - onset, negative before it).

Schema history:

- 1 (no version field): the layout of 2 without ``schema_version``, and no rankings;
- 2: warning only;
- 3: detection beside warning (``AtFAR.detected``, ``median_latency``, ``mean_latency_fraction``,
  ``latencies``, ``latency_fractions``; the same per seed in :class:`SeedScore`), and the counts
  the rates rest on (``Point.quiet_units``, ``Point.null_runs``).

Versions 1 and 2 are read as 3 with those fields None (a peer cell has no detection either).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from probekit.atomic import atomic_file

__all__ = ["SCHEMA_VERSION", "AtFAR", "Cell", "Point", "Rankings", "SeedScore", "load_cell", "save_cell"]

SCHEMA_VERSION = 3

#: The keys only a peer cell has (the LLC's settings and costs); kept as they were computed.
PEER_KEYS = ("llc", "llc_seconds", "llc_source", "checkpoint_rule", "costs")


@dataclass(frozen=True)
class AtFAR:
    """The scores at the threshold matched to a false-alarm rate (5% in the report): warning, then detection."""

    detection: float  # the *warning* rate: episodes with a hit / episodes (named before detection was scored)
    far: float  # the false-alarm rate reached (quiet units with an alarm)
    mean_lead_fraction: float  # lead / time to onset, a miss counting 0
    median_lead: float | None  # records, over the hits (None without one)
    threshold: float | None  # the signal threshold (None: not finite)
    leads: tuple[float | None, ...] = ()  # per episode, in trajectory records (None: a miss)
    # detection at the same threshold (None: not scored, schema < 3 or a peer cell)
    detected: float | None = None  # the detection rate: episodes detected / episodes
    median_latency: float | None = None  # records, alarm - onset, over the detected (negative: before the onset)
    mean_latency_fraction: float | None = None  # latency / (midpoint - onset), over the detected
    latencies: tuple[float | None, ...] | None = None  # per episode, trajectory records (None: not detected)
    latency_fractions: tuple[float | None, ...] | None = None  # per episode

    def to_json(self) -> dict:
        out = {**dataclasses.asdict(self), "leads": list(self.leads)}
        for key in ("latencies", "latency_fractions"):
            out[key] = None if out[key] is None else list(out[key])
        return out

    @classmethod
    def from_json(cls, data: dict) -> "AtFAR":
        out = {**data, "leads": tuple(data.get("leads", ()))}
        for key in ("latencies", "latency_fractions"):
            out[key] = None if data.get(key) is None else tuple(data[key])
        return cls(**out)


@dataclass(frozen=True)
class SeedScore:
    """One seed's share of a point at the matched threshold (the pooled one): warning, then detection."""

    seed: int
    episodes: int
    hits: int
    median_lead: float | None
    mean_lead_fraction: float  # a miss counting 0
    detected: int | None = None  # None: detection not scored (schema < 3, a peer cell)
    median_latency: float | None = None  # records, over the detected
    mean_latency_fraction: float | None = None  # over the detected

    @property
    def warning_rate(self) -> float:
        return self.hits / self.episodes if self.episodes else 0.0

    @property
    def detection_rate(self) -> float | None:
        if self.detected is None:
            return None
        return self.detected / self.episodes if self.episodes else 0.0


@dataclass(frozen=True)
class Point:
    """The scores of one probe-set size (0: the full pool) of a cell."""

    size: int
    fidelity: float | None  # rank correlation of the prefix's signal with the full pool's
    signal: str  # the signal's label
    rule: str  # the rule's label with its parameters
    fixed_threshold: dict  # episodes, hits, late, median_lead, false alarms at the rule's own threshold
    at_far_5pct: AtFAR
    at_far_5pct_by_seed: tuple[SeedScore, ...]
    auc: float  # area under the lead-vs-false-alarm curve
    curve: dict  # {"far": [...], "detection": [...], "mean_lead_fraction": [...]}
    episodes: tuple[dict, ...]  # one row per episode: run, seed, transition, outcome, lead, time_to_onset
    #                             (schema 3: latency, onset_to_midpoint)
    quiet_units: int | None = None  # what the false-alarm rate divides by (None: schema < 3)
    null_runs: int | None = None  # of them, whole null runs; the rest are the episodes' quiet periods

    @property
    def lead_fraction(self) -> float:
        return float(self.at_far_5pct.mean_lead_fraction)

    @property
    def has_detection(self) -> bool:
        return self.at_far_5pct.detected is not None

    @property
    def n_episodes(self) -> int:
        return len(self.at_far_5pct.leads)

    @property
    def seed_median_leads(self) -> list[float]:
        return [s.median_lead for s in self.at_far_5pct_by_seed if s.median_lead is not None]

    @property
    def seed_median_latencies(self) -> list[float]:
        return [s.median_latency for s in self.at_far_5pct_by_seed if s.median_latency is not None]

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["at_far_5pct"] = self.at_far_5pct.to_json()
        out["at_far_5pct_by_seed"] = [dataclasses.asdict(s) for s in self.at_far_5pct_by_seed]
        out["episodes"] = list(self.episodes)
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Point":
        return cls(**{**data, "at_far_5pct": AtFAR.from_json(data["at_far_5pct"]),
                      "at_far_5pct_by_seed": tuple(SeedScore(**s) for s in data.get("at_far_5pct_by_seed", ())),
                      "episodes": tuple(data.get("episodes", ()))})


@dataclass(frozen=True)
class Cell:
    """One (family, design, signal, rule) of the grid: its points, or the error that stopped it."""

    family: str
    design: str  # a design's label ("random", "cluster", "gradient", "concern(...)"), "scalar" or "peer"
    signal: dict  # SignalSpec fields: statistic, window, stride, detrend
    rule: dict  # RuleSpec fields: name, params
    points: tuple[Point, ...] = ()
    error: str | None = None
    traceback: str | None = None
    peer: dict | None = None  # a peer cell's LLC settings, timings and costs (PEER_KEYS)
    schema_version: int = SCHEMA_VERSION

    # -- what the report and the figures ask of a cell -------------------------------------
    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.points)

    @property
    def kind(self) -> str:
        """"design" (a probe design: the 2RDM on selected probes), "scalar" or "peer"."""
        return self.design if self.design in ("scalar", "peer") else "design"

    @property
    def label(self) -> str:
        """The row name: the design, or ``scalar:<baseline>``, or ``peer:<signal>``."""
        return self.design if self.kind == "design" else f"{self.design}:{self.signal['statistic']}"

    @property
    def statistic(self) -> str:
        return self.signal["statistic"]

    def point(self, size: int) -> Point | None:
        return next((p for p in self.points if p.size == size), None)

    def key(self) -> dict:
        """What identifies the cell in the grid (its JSON without the results)."""
        return {"family": self.family, "design": self.design, "signal": self.signal, "rule": self.rule}

    # -- JSON -----------------------------------------------------------------------------------
    def to_json(self) -> dict:
        out: dict[str, Any] = {**self.key(), "points": [p.to_json() for p in self.points], "error": self.error,
                               "schema_version": self.schema_version}
        if self.traceback is not None:
            out["traceback"] = self.traceback
        if self.peer is not None:
            out.update(self.peer)
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Cell":
        version = data.get("schema_version", 1)
        if version > SCHEMA_VERSION:
            from probekit.errors import ProbekitUsageError

            raise ProbekitUsageError(
                f"a bench cell of schema version {version}: this probekit reads up to {SCHEMA_VERSION}; upgrade it.")
        peer = {k: data[k] for k in PEER_KEYS if k in data} or None
        return cls(family=data["family"], design=data["design"], signal=data["signal"], rule=data["rule"],
                   points=tuple(Point.from_json(p) for p in data.get("points", ())), error=data.get("error"),
                   traceback=data.get("traceback"), peer=peer,
                   schema_version=SCHEMA_VERSION)

    @classmethod
    def failed(cls, key: dict, error: str, traceback: str | None = None) -> "Cell":
        return cls(**key, error=error, traceback=traceback)


def cell_key(cell: dict | Cell) -> dict:
    """A grid cell's identity, from a planned cell (a dict of the grid) or a computed one."""
    return cell.key() if isinstance(cell, Cell) else {k: cell[k] for k in ("family", "design", "signal", "rule")}


def save_cell(cell: Cell, path: str | Path) -> None:
    """One cell file (full precision, indented), written atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(cell.to_json(), indent=1, sort_keys=True, default=float) + "\n")


def load_cell(path: str | Path) -> Cell:
    return Cell.from_json(json.loads(Path(path).read_text()))


def finished(path: str | Path) -> bool:
    """A cell file without an error: a rerun skips it (a failed or unreadable cell is computed again)."""
    try:
        return json.loads(Path(path).read_text())["error"] is None
    except (OSError, ValueError, KeyError):
        return False


def cells_from_json(items: Iterable[dict]) -> list[Cell]:
    return [Cell.from_json(c) for c in items]


@dataclass(frozen=True)
class Rankings:
    """A design's selections in one family: run ("<name>/<seed>") -> probe ids in rank order.

    Every cell of the design reads its probes from these; the figures draw from them
    instead of selecting again."""

    family: str
    design: str
    runs: dict[str, list[str]] = field(default_factory=dict)

    @staticmethod
    def run_key(name: str, seed: int) -> str:
        return f"{name}/{int(seed)}"

    def of(self, name: str, seed: int) -> list[str] | None:
        return self.runs.get(self.run_key(name, seed))

    def to_json(self) -> dict:
        return {"family": self.family, "design": self.design, "runs": self.runs, "schema_version": SCHEMA_VERSION}

    @classmethod
    def from_json(cls, data: dict) -> "Rankings":
        return cls(data["family"], data["design"], {k: list(v) for k, v in data["runs"].items()})

    def save(self, path: str | Path) -> None:
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Rankings | None":
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError):
            return None


def read_results(path: str | Path) -> Any:
    """A ``GridResult`` read back from a benchmark's ``results.json`` (to redraw its figures or
    compare runs); files written before the schema version read too (their grid named its
    designs ``strategies``)."""
    from probekit.eval.bench.designs import Design
    from probekit.eval.bench.grid import DESIGNS, BenchGrid, RuleSpec
    from probekit.eval.bench.run import GridResult
    from probekit.eval.scoring.signals import SignalSpec

    data = json.loads(Path(path).read_text())
    grid = dict(data["grid"])
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in grid.items() if k not in ("strategies", "expanded")}
    fields["signals"] = tuple(SignalSpec(**s) for s in grid["signals"])
    fields["rules"] = tuple(RuleSpec(r["name"], tuple(tuple(kv) for kv in r["params"])) for r in grid["rules"])
    if "strategies" in grid:  # schema 1: plain strategy names, with the grid's own defaults
        defaults = {d.label: d for d in DESIGNS}
        fields["designs"] = tuple(defaults.get(name, Design(name)) for name in grid["strategies"])
    else:
        fields["designs"] = tuple(Design(d["strategy"], tuple(tuple(kv) for kv in d["params"]), d.get("name", ""),
                                         pilot=d.get("pilot", 0))
                                  for d in grid["designs"])
    rankings = {(r["family"], r["design"]): Rankings.from_json(r) for r in data.get("rankings", [])}
    return GridResult(BenchGrid(**fields), cells_from_json(data["cells"]), rankings=rankings,
                      pools=data.get("pools", {}))
