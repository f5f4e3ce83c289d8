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
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from probekit.atomic import atomic_file

__all__ = ["render_markdown", "write_report"]


def _signal_label(signal: dict) -> str:
    extra = "" if signal["detrend"] == "none" else f", {signal['detrend']}"
    stride = "" if signal.get("stride", 1) == 1 else f", stride {signal['stride']}"
    return f"{signal['statistic']} W={signal['window']}{stride}{extra}"


def _rule_label(rule: dict) -> str:
    from probekit.eval.bench import RuleSpec

    return RuleSpec.from_dict(rule).label


def _design(cell: dict) -> str:
    return f"scalar:{cell['signal']['statistic']}" if cell["design"] == "scalar" else cell["design"]


def _points(cells: list[dict]) -> dict[tuple[str, str, str, str], dict[str, dict]]:
    """(signal, rule, design, size) -> family -> point (or {"error": ...}); scalar cells have signal "scalar"."""
    rows: dict[tuple[str, str, str, str], dict[str, dict]] = {}
    for cell in cells:
        signal = "scalar" if cell["design"] == "scalar" else _signal_label(cell["signal"])
        key = (signal, _rule_label(cell["rule"]), _design(cell))
        if cell["error"]:
            rows.setdefault((*key, "error"), {})[cell["family"]] = {"error": cell["error"]}
            continue
        for p in cell["points"]:
            rows.setdefault((*key, "full" if p["size"] == 0 else str(p["size"])), {})[cell["family"]] = p
    return rows


def _spread(p: dict) -> str:
    """The seed spread: the range over seeds of each seed's median lead (seeds with a hit)."""
    leads = [s["median_lead"] for s in p.get("at_far_5pct_by_seed", []) if s["median_lead"] is not None]
    if len(leads) < 2:
        return ""
    return f", seeds {min(leads):.0f}-{max(leads):.0f}"


def _cell_text(p: dict | None) -> str:
    if p is None:
        return ""
    if "error" in p:
        return "error"
    a = p["at_far_5pct"]
    if a["detection"] == 0:
        return "no warning"
    return f"{a['median_lead']:.0f} ({a['detection']:.0%}{_spread(p)})"


def _lead(p: dict) -> float:
    return p["at_far_5pct"]["mean_lead_fraction"]


def _best(points: list[tuple[str, dict]]) -> tuple[str, dict | None]:
    """The point with the largest mean lead fraction at 5% FAR (ties: the first)."""
    best = None
    for name, p in points:
        if best is None or _lead(p) > _lead(best[1]):
            best = (name, p)
    return best if best else ("-", None)


def _table(rows: dict, keys: list, families: list[str], first: str, label) -> list[str]:
    lines = [f"| {first} | " + " | ".join(families) + " |", "|" + "---|" * (first.count("|") + 1 + len(families))]
    for key in keys:
        lines.append(f"| {label(key)} | " + " | ".join(_cell_text(rows[key].get(f)) for f in families) + " |")
    return lines


def render_markdown(result: Any, command: str) -> str:
    rows = _points([c for c in result.cells if c["design"] != "peer"])  # the peers have their own section
    grid = result.grid
    families = list(grid.families)
    primary = (_signal_label(dataclasses.asdict(grid.signals[0])), grid.rules[0].label)
    combos = [(_signal_label(dataclasses.asdict(s)), r.label) for s in grid.signals for r in grid.rules]
    lines = [
        "# probekit bench",
        "",
        f"Command: `{command}`",
        "",
        f"Grid: preset `{grid.preset}`, seeds {list(grid.seeds)}, sizes {list(grid.sizes)}, "
        f"designs {', '.join(grid.strategies)}; signals: {'; '.join(c for c in dict.fromkeys(s for s, _ in combos))}; "
        f"alarm rules: {'; '.join(f'`{r.label}`' for r in grid.rules)} (each rule's threshold swept); "
        f"hit window: the last {grid.hit_fraction:.0%} of the time to onset.",
        "",
        "Cells: median lead in records before onset at a 5% false-alarm rate (null runs and quiet periods), "
        "with the detection rate and the seed spread (the range of the per-seed median leads). `full` = every "
        "pool example (the complete-basis limit); `scalar:*` rows are the classical baselines on the full pool.",
        "",
        f"## Probe designs: {primary[0]}, rule `{primary[1]}`",
        "",
    ]
    design_keys = [k for k in rows if (k[0], k[1]) == primary]
    scalar_keys = [k for k in rows if k[0] == "scalar" and k[1] == primary[1]]
    lines += _table(rows, design_keys + scalar_keys, families, "design | size", lambda k: f"{k[2]} | {k[3]}")
    if len(combos) > 1:
        lines += ["", "## Signal and rule axes", "",
                  "Each signal under each alarm rule: the best design and size at a 5% false-alarm rate, "
                  "named in brackets (a best-of over designs and sizes is optimistic; the leave-one-family-out "
                  "line below is the honest selection). The full tables are at the end.", ""]
        lines += ["| signal | rule | " + " | ".join(families) + " |", "|" + "---|" * (2 + len(families))]
        for sig, rule in combos:
            cells = []
            for fam in families:
                pts = [(f"{k[2]} {k[3]}", r[fam]) for k, r in rows.items()
                       if (k[0], k[1]) == (sig, rule) and fam in r and "error" not in r[fam]]
                name, p = _best(pts)
                cells.append("" if p is None else _cell_text(p) + ("" if _lead(p) == 0 else f" [{name}]"))
            lines.append(f"| {sig} | `{rule}` | " + " | ".join(cells) + " |")
        lines += ["", "Scalar baselines (full pool) under each rule:", ""]
        keys = [k for k in rows if k[0] == "scalar"]  # grid order: each baseline, under each rule
        lines += _table(rows, keys, families, "baseline | rule", lambda k: f"{k[2]} | `{k[1]}`")
    lines += ["", "## What this says", ""]
    for fam in families:
        designs = [(f"{k[2]} {k[3]} [{k[0]}, `{k[1]}`]", r[fam]) for k, r in rows.items()
                   if fam in r and "error" not in r[fam] and k[0] != "scalar"]
        scalars = [(f"{k[2]} [`{k[1]}`]", r[fam]) for k, r in rows.items()
                   if fam in r and "error" not in r[fam] and k[0] == "scalar"]
        best_d, pd = _best(designs)
        best_s, ps = _best(scalars)
        lead_d = _lead(pd) if pd else 0.0
        lead_s = _lead(ps) if ps else 0.0
        if lead_d == 0:
            verdict = "no 2RDM design gives early warning at a 5% false-alarm rate"
        else:
            verdict = f"best 2RDM design: {best_d}, {_cell_text(pd)}, mean lead {lead_d:.0%} of the time to onset"
        if lead_s > 0 and lead_s >= lead_d:
            verdict += (f"; a scalar baseline does as well or better: {best_s}, {_cell_text(ps)}, mean lead "
                        f"{lead_s:.0%}")
        lines.append(f"- **{fam}**: {verdict}.")
    lines += ["", "Leave-one-family-out: the 2RDM configuration (signal, rule, design and size) with the best mean "
              "area under the lead curve on the other families, scored on the held-out one.", ""]
    complete = {k: r for k, r in rows.items()
                if k[0] != "scalar" and all(f in r and "error" not in r[f] for f in families)}
    for fam in families:
        others = [f for f in families if f != fam]
        if not complete or not others:
            continue
        chosen = max(complete, key=lambda k: float(np.mean([complete[k][f]["auc"] for f in others])))
        p = complete[chosen][fam]
        lines.append(f"- {fam}: chosen {chosen[2]} {chosen[3]} [{chosen[0]}, `{chosen[1]}`] -> {_cell_text(p)}, "
                     f"area {p['auc']:.3f}")
    if len(combos) > 1:
        lines += ["", "## Every signal and rule, design by size", ""]
        for sig, rule in combos:
            keys = [k for k in rows if (k[0], k[1]) == (sig, rule)]
            lines += ["<details>", f"<summary>{sig}, rule <code>{rule}</code></summary>", ""]
            lines += _table(rows, keys, families, "design | size", lambda k: f"{k[2]} | {k[3]}")
            lines += ["", "</details>", ""]
    from probekit.eval.peer_report import render_peers

    lines += render_peers(result)
    errors = [c for c in result.cells if c["error"]]
    if errors:
        lines += ["", "## Failed cells", ""] + [
            f"- {c['family']} / {c['design']} [{_signal_label(c['signal'])}, `{_rule_label(c['rule'])}`]: {c['error']}"
            for c in errors]
    return "\n".join(lines) + "\n"


CURVE_DECIMALS = 4  # the curves in results.json: rates and lead fractions, to 1e-4


def _rounded_curves(cell: dict) -> dict:
    points = [{**p, "curve": {k: [round(v, CURVE_DECIMALS) for v in vals] for k, vals in p["curve"].items()}}
              if "curve" in p else p for p in cell.get("points", [])]
    return {**cell, "points": points}


def write_report(result: Any, out_dir: str | Path, command: str) -> tuple[Path, Path]:
    """Write ``results.json`` (every cell; no timestamps: same grid, same file) and ``report.md``.

    results.json is compact JSON, one cell per line, with the threshold curves rounded to
    1e-4 (the full grid's file is ~10x smaller); every other number is as computed, and
    ``cells/`` keeps the curves unrounded.
    """
    out = Path(out_dir)
    head = {"grid": dataclasses.asdict(result.grid), "grid_key": result.grid.key()}
    cells = [json.dumps(_rounded_curves(c), sort_keys=True, separators=(",", ":"), default=float) for c in result.cells]
    text = json.dumps(head, sort_keys=True, default=str)[:-1] + ',"cells":[\n' + ",\n".join(cells) + "\n]}\n"
    json_path, md_path = out / "results.json", out / "report.md"
    with atomic_file(json_path) as tmp:
        tmp.write_text(text)
    with atomic_file(md_path) as tmp:
        tmp.write_text(render_markdown(result, command))
    return json_path, md_path
