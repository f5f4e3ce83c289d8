"""The benchmark report: every cell as JSON, and a basis-set-style markdown report.

- The main table is the grid's primary signal under its primary rule: rows are
  designs x sizes (``full`` = the whole pool, the complete-basis limit; scalar
  baselines last), columns are transition families, and a cell is the median
  lead (records before onset) at a 5% false-alarm rate with the detection rate
  and the seed spread (the range of the per-seed median leads).
- With several signals or rules, an axes table gives each signal x rule its
  best design and size, the scalar baselines under each rule, and collapsed
  full tables for every signal x rule.
- Below, the report says per family, plainly, whether any 2RDM configuration
  warns early at that false-alarm rate and whether a scalar baseline does as
  well, and gives the leave-one-family-out line: the configuration with the
  best mean area under the lead curve on the other families, scored on the
  held-out one (the honest answer to "which design should I use?").

Each section is one function of ``(result, table)``; the report reads cells through
:mod:`probekit.eval.bench.cells`, never their JSON.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from probekit.atomic import atomic_file
from probekit.eval.bench.cells import SCHEMA_VERSION, Cell, Point

__all__ = ["render_markdown", "write_report"]


class Row(NamedTuple):
    """A row of the report's tables: a configuration, scored in every family."""

    signal: str  # the signal's label, or "scalar" for the scalar baselines
    rule: str
    design: str  # the design's label, or "scalar:<baseline>"
    size: str  # "8", ..., "full", or "error"


Table = dict  # Row -> family -> Point, or the error (str) of a failed cell


def _signal_label(signal: dict) -> str:
    extra = "" if signal["detrend"] == "none" else f", {signal['detrend']}"
    stride = "" if signal.get("stride", 1) == 1 else f", stride {signal['stride']}"
    return f"{signal['statistic']} W={signal['window']}{stride}{extra}"


def _rule_label(rule: dict) -> str:
    from probekit.eval.bench import RuleSpec

    return RuleSpec.from_dict(rule).label


def _table_of(cells: list[Cell]) -> Table:
    """Every (configuration, size) row with its point in each family; scalar cells have signal "scalar"."""
    rows: Table = {}
    for cell in cells:
        signal = "scalar" if cell.kind == "scalar" else _signal_label(cell.signal)
        key = (signal, _rule_label(cell.rule), cell.label)
        if cell.error:
            rows.setdefault(Row(*key, "error"), {})[cell.family] = cell.error
            continue
        for p in cell.points:
            rows.setdefault(Row(*key, "full" if p.size == 0 else str(p.size)), {})[cell.family] = p
    return rows


def _scored(entry: Any) -> bool:
    return isinstance(entry, Point)


def _spread(p: Point) -> str:
    """The seed spread: the range over seeds of each seed's median lead (seeds with a hit)."""
    leads = p.seed_median_leads
    if len(leads) < 2:
        return ""
    return f", seeds {min(leads):.0f}-{max(leads):.0f}"


def _cell_text(p: Point | str | None) -> str:
    if p is None:
        return ""
    if not _scored(p):
        return "error"
    a = p.at_far_5pct
    if a.detection == 0:
        return "no warning"
    return f"{a.median_lead:.0f} ({a.detection:.0%}{_spread(p)})"


def _best(points: list[tuple[str, Point]]) -> tuple[str, Point | None]:
    """The point with the largest mean lead fraction at 5% FAR (ties: the first)."""
    best = None
    for name, p in points:
        if best is None or p.lead_fraction > best[1].lead_fraction:
            best = (name, p)
    return best if best else ("-", None)


def _table(rows: Table, keys: list[Row], families: list[str], first: str, label: Callable[[Row], str]) -> list[str]:
    lines = [f"| {first} | " + " | ".join(families) + " |", "|" + "---|" * (first.count("|") + 1 + len(families))]
    for key in keys:
        lines.append(f"| {label(key)} | " + " | ".join(_cell_text(rows[key].get(f)) for f in families) + " |")
    return lines


def _by_size(row: Row) -> str:
    return f"{row.design} | {row.size}"


def _combos(grid: Any) -> list[tuple[str, str]]:
    return [(_signal_label(dataclasses.asdict(s)), r.label) for s in grid.signals for r in grid.rules]


# -- the sections --------------------------------------------------------------------------------
def _header(result: Any, rows: Table, command: str) -> list[str]:
    grid = result.grid
    combos = _combos(grid)
    return [
        "# probekit bench",
        "",
        f"Command: `{command}`",
        "",
        f"Grid: preset `{grid.preset}`, seeds {list(grid.seeds)}, sizes {list(grid.sizes)}, "
        f"designs {', '.join(d.label for d in grid.designs)}; "
        f"signals: {'; '.join(c for c in dict.fromkeys(s for s, _ in combos))}; "
        f"alarm rules: {'; '.join(f'`{r.label}`' for r in grid.rules)} (each rule's threshold swept); "
        f"hit window: the last {grid.hit_fraction:.0%} of the time to onset.",
        "",
        "Cells: median lead in records before onset at a 5% false-alarm rate (null runs and quiet periods), "
        "with the detection rate and the seed spread (the range of the per-seed median leads). `full` = every "
        "pool example (the complete-basis limit); `scalar:*` rows are the classical baselines on the full pool.",
    ]


def _main_table(result: Any, rows: Table) -> list[str]:
    grid = result.grid
    primary = (_signal_label(dataclasses.asdict(grid.signals[0])), grid.rules[0].label)
    lines = ["", f"## Probe designs: {primary[0]}, rule `{primary[1]}`", ""]
    design_keys = [k for k in rows if (k.signal, k.rule) == primary]
    scalar_keys = [k for k in rows if k.signal == "scalar" and k.rule == primary[1]]
    return lines + _table(rows, design_keys + scalar_keys, list(grid.families), "design | size", _by_size)


def _axes(result: Any, rows: Table) -> list[str]:
    combos = _combos(result.grid)
    families = list(result.grid.families)
    if len(combos) <= 1:
        return []
    lines = ["", "## Signal and rule axes", "",
             "Each signal under each alarm rule: the best design and size at a 5% false-alarm rate, "
             "named in brackets (a best-of over designs and sizes is optimistic; the leave-one-family-out "
             "line below is the honest selection). The full tables are at the end.", ""]
    lines += ["| signal | rule | " + " | ".join(families) + " |", "|" + "---|" * (2 + len(families))]
    for sig, rule in combos:
        texts = []
        for fam in families:
            pts = [(f"{k.design} {k.size}", r[fam]) for k, r in rows.items()
                   if (k.signal, k.rule) == (sig, rule) and _scored(r.get(fam))]
            name, p = _best(pts)
            texts.append("" if p is None else _cell_text(p) + ("" if p.lead_fraction == 0 else f" [{name}]"))
        lines.append(f"| {sig} | `{rule}` | " + " | ".join(texts) + " |")
    lines += ["", "Scalar baselines (full pool) under each rule:", ""]
    keys = [k for k in rows if k.signal == "scalar"]  # grid order: each baseline, under each rule
    return lines + _table(rows, keys, families, "baseline | rule", lambda k: f"{k.design} | `{k.rule}`")


def _verdicts(result: Any, rows: Table) -> list[str]:
    lines = ["", "## What this says", ""]
    for fam in result.grid.families:
        designs = [(f"{k.design} {k.size} [{k.signal}, `{k.rule}`]", r[fam]) for k, r in rows.items()
                   if _scored(r.get(fam)) and k.signal != "scalar"]
        scalars = [(f"{k.design} [`{k.rule}`]", r[fam]) for k, r in rows.items()
                   if _scored(r.get(fam)) and k.signal == "scalar"]
        best_d, pd = _best(designs)
        best_s, ps = _best(scalars)
        lead_d = pd.lead_fraction if pd else 0.0
        lead_s = ps.lead_fraction if ps else 0.0
        if lead_d == 0:
            verdict = "no 2RDM design gives early warning at a 5% false-alarm rate"
        else:
            verdict = f"best 2RDM design: {best_d}, {_cell_text(pd)}, mean lead {lead_d:.0%} of the time to onset"
        if lead_s > 0 and lead_s >= lead_d:
            verdict += (f"; a scalar baseline does as well or better: {best_s}, {_cell_text(ps)}, mean lead "
                        f"{lead_s:.0%}")
        lines.append(f"- **{fam}**: {verdict}.")
    return lines


def _leave_one_family_out(result: Any, rows: Table) -> list[str]:
    families = list(result.grid.families)
    lines = ["", "Leave-one-family-out: the 2RDM configuration (signal, rule, design and size) with the best mean "
             "area under the lead curve on the other families, scored on the held-out one.", ""]
    complete = {k: r for k, r in rows.items() if k.signal != "scalar" and all(_scored(r.get(f)) for f in families)}
    for fam in families:
        others = [f for f in families if f != fam]
        if not complete or not others:
            continue
        chosen = max(complete, key=lambda k: float(np.mean([complete[k][f].auc for f in others])))
        p = complete[chosen][fam]
        lines.append(f"- {fam}: chosen {chosen.design} {chosen.size} [{chosen.signal}, `{chosen.rule}`] -> "
                     f"{_cell_text(p)}, area {p.auc:.3f}")
    return lines


def _every_table(result: Any, rows: Table) -> list[str]:
    combos = _combos(result.grid)
    if len(combos) <= 1:
        return []
    lines = ["", "## Every signal and rule, design by size", ""]
    for sig, rule in combos:
        keys = [k for k in rows if (k.signal, k.rule) == (sig, rule)]
        lines += ["<details>", f"<summary>{sig}, rule <code>{rule}</code></summary>", ""]
        lines += _table(rows, keys, list(result.grid.families), "design | size", _by_size)
        lines += ["", "</details>", ""]
    return lines


def _failed(result: Any, rows: Table) -> list[str]:
    errors = [c for c in result.cells if c.error]
    if not errors:
        return []
    return ["", "## Failed cells", ""] + [
        f"- {c.family} / {c.design} [{_signal_label(c.signal)}, `{_rule_label(c.rule)}`]: {c.error}" for c in errors]


def render_markdown(result: Any, command: str) -> str:
    from probekit.eval.reports.peer_report import render_peers

    rows = _table_of([c for c in result.cells if c.kind != "peer"])  # the peers have their own section
    lines = _header(result, rows, command)
    for section in (_main_table, _axes, _verdicts, _leave_one_family_out, _every_table):
        lines += section(result, rows)
    lines += render_peers(result)
    lines += _failed(result, rows)
    return "\n".join(lines) + "\n"


CURVE_DECIMALS = 4  # the curves in results.json: rates and lead fractions, to 1e-4


def _rounded_curves(cell: dict) -> dict:
    points = [{**p, "curve": {k: [round(v, CURVE_DECIMALS) for v in vals] for k, vals in p["curve"].items()}}
              if "curve" in p else p for p in cell.get("points", [])]
    return {**cell, "points": points}


def write_report(result: Any, out_dir: str | Path, command: str) -> tuple[Path, Path]:
    """Write ``results.json`` (every cell and every design's rankings; no timestamps: same grid,
    same file) and ``report.md``.

    results.json is compact JSON, one cell per line, with the threshold curves rounded to
    1e-4 (the full grid's file is ~10x smaller); every other number is as computed, and
    ``cells/`` keeps the curves unrounded.
    """
    out = Path(out_dir)
    head = {"grid": dataclasses.asdict(result.grid), "grid_key": result.grid.key(), "schema_version": SCHEMA_VERSION,
            "rankings": [r.to_json() for _, r in sorted(result.rankings.items())]}
    cells = [json.dumps(_rounded_curves(c.to_json()), sort_keys=True, separators=(",", ":"), default=float)
             for c in result.cells]
    text = json.dumps(head, sort_keys=True, default=str)[:-1] + ',"cells":[\n' + ",\n".join(cells) + "\n]}\n"
    json_path, md_path = out / "results.json", out / "report.md"
    with atomic_file(json_path) as tmp:
        tmp.write_text(text)
    with atomic_file(md_path) as tmp:
        tmp.write_text(render_markdown(result, command))
    return json_path, md_path
