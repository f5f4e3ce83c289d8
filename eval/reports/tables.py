"""The benchmark report's tables: rows (a configuration scored in every family) and cell texts.

A row is a (signal, rule, design, size) of the grid; its entry per family is the typed
:class:`~probekit.eval.bench.cells.Point`, or the error of a failed cell. A point reads as
*warning* (median lead, warning rate, seed spread) and *detection* (median latency, detection
rate, mean latency fraction), and a design row carries its mark against random (the paired
tests of ``probekit.eval.scoring.paired``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import numpy as np

from probekit.eval.bench.cells import Cell, Point

__all__ = ["MARKS", "Row", "Table", "best_of", "both_text", "by_size", "cell_text", "detect_text", "lofo", "marker",
           "render_table", "rule_label", "scored", "short_text", "signal_label", "signal_rule_pairs", "spread",
           "table_of"]


class Row(NamedTuple):
    """A row of the report's tables: a configuration, scored in every family."""

    signal: str  # the signal's label, or "scalar" for the scalar baselines
    rule: str
    design: str  # the design's label, or "scalar:<baseline>"
    size: str  # "8", ..., "full", or "error"


Table = dict  # Row -> family -> Point, or the error (str) of a failed cell


def signal_label(signal: dict) -> str:
    extra = "" if signal["detrend"] == "none" else f", {signal['detrend']}"
    stride = "" if signal.get("stride", 1) == 1 else f", stride {signal['stride']}"
    return f"{signal['statistic']} W={signal['window']}{stride}{extra}"


def rule_label(rule: dict) -> str:
    from probekit.eval.bench import RuleSpec

    return RuleSpec.from_dict(rule).label


def table_of(cells: list[Cell]) -> Table:
    """Every (configuration, size) row with its point in each family; scalar cells have signal "scalar"."""
    rows: Table = {}
    for cell in cells:
        signal = "scalar" if cell.kind == "scalar" else signal_label(cell.signal)
        key = (signal, rule_label(cell.rule), cell.label)
        if cell.error:
            rows.setdefault(Row(*key, "error"), {})[cell.family] = cell.error
            continue
        for p in cell.points:
            rows.setdefault(Row(*key, "full" if p.size == 0 else str(p.size)), {})[cell.family] = p
    return rows


def scored(entry: Any) -> bool:
    return isinstance(entry, Point)


def spread(p: Point) -> str:
    """The seed spread: the range over seeds of each seed's median lead (seeds with a hit)."""
    leads = p.seed_median_leads
    if len(leads) < 2:
        return ""
    return f", seeds {min(leads):.0f}-{max(leads):.0f}"


def cell_text(p: Point | str | None) -> str:
    """Warning: median lead (warning rate, seed spread)."""
    if p is None:
        return ""
    if not scored(p):
        return "error"
    a = p.at_far_5pct
    if a.detection == 0:
        return "no warning"
    return f"{a.median_lead:.0f} ({a.detection:.0%}{spread(p)})"


def detect_text(p: Point | str | None) -> str:
    """Detection: median latency in records (detection rate, mean latency fraction of onset to midpoint)."""
    if p is None:
        return ""
    if not scored(p):
        return "error"
    a = p.at_far_5pct
    if not p.has_detection:
        return "n/a"  # a cell of schema < 3, or a peer
    if not a.detected:
        return "not detected"
    return f"{a.median_latency:+.0f} ({a.detected:.0%}, {a.mean_latency_fraction:+.0%})"


def both_text(p: Point | str | None) -> str:
    if not scored(p):
        return cell_text(p)
    return f"{cell_text(p)} · {detect_text(p)}"


def short_text(p: Point) -> str:
    """A point in a few characters: warning lead (rate) · detection rate."""
    a = p.at_far_5pct
    warn = "no warning" if a.detection == 0 else f"{a.median_lead:.0f} ({a.detection:.0%})"
    return warn if not p.has_detection else f"{warn} · det {a.detected:.0%}"


def best_of(points: list[tuple[str, Point]]) -> tuple[str, Point | None]:
    """The point with the largest mean lead fraction at 5% FAR (ties: the first)."""
    best = None
    for name, p in points:
        if best is None or p.lead_fraction > best[1].lead_fraction:
            best = (name, p)
    return best if best else ("-", None)


def lofo(rows: Table, keys: list[Row], fam: str, families: list[str]) -> tuple[Row | None, int]:
    """The row among ``keys`` with the best mean area under the lead curve on the other families (scored
    in every family), and how many rows it was picked from; (None, 0) with one family or none complete."""
    others = [f for f in families if f != fam]
    complete = [k for k in keys if all(scored(rows[k].get(f)) for f in families)]
    if not complete or not others:
        return None, 0
    return max(complete, key=lambda k: float(np.mean([rows[k][f].auc for f in others]))), len(complete)


MARKS = {"better": " ↑", "worse": " ↓", "indistinguishable": " ≈"}


def render_table(rows: Table, keys: list[Row], families: list[str], first: str, label: Callable[[Row], str],
                 text: Callable[[Any], str] = cell_text,
                 mark: Callable[[Row, str], str] = lambda key, fam: "") -> list[str]:
    """A markdown table: one line per row key, one column per family (``text`` of its point, then its ``mark``)."""
    lines = [f"| {first} | " + " | ".join(families) + " |", "|" + "---|" * (first.count("|") + 1 + len(families))]
    for key in keys:
        entries = [rows[key].get(f) for f in families]
        cells = [text(e) + (mark(key, f) if scored(e) else "") for f, e in zip(families, entries)]
        lines.append(f"| {label(key)} | " + " | ".join(cells) + " |")
    return lines


def by_size(row: Row) -> str:
    return f"{row.design} | {row.size}"


def signal_rule_pairs(grid: Any) -> list[tuple[str, str]]:
    return [(signal_label(dataclasses.asdict(s)), r.label) for s in grid.signals for r in grid.rules]


def marker(tests: dict, score: str) -> Callable[[Row, str], str]:
    """A row's mark in a family: its paired test against random at the same size, on this score."""
    def mark(key: Row, fam: str) -> str:
        if key.signal == "scalar" or not key.size.isdigit() or fam not in tests:
            return ""
        return MARKS.get(tests[fam].verdict(key.design, int(key.size), score) or "", "")
    return mark
