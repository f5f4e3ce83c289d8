"""The benchmark report: every cell as JSON, and a basis-set-style markdown table.

Rows are designs x sizes (``full`` = the whole pool, the complete-basis limit;
scalar baselines last), columns are transition families, and a cell is the
median lead (records before onset) at a 5% false-alarm rate with the
detection rate and the spread of the leads over episodes. Below the table the
report says, per family, plainly whether any 2RDM design warns early at that
false-alarm rate and whether a scalar baseline does as well, and gives the
leave-one-family-out line: the design with the best mean area under the
lead curve on the other families, scored on the held-out one.
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
    return f"{signal['statistic']} W={signal['window']}{extra}"


def _rows(cells: list[dict]) -> dict[tuple[str, str], dict[str, dict]]:
    """(design label, size label) -> family -> point."""
    rows: dict[tuple[str, str], dict[str, dict]] = {}
    signals = {json.dumps(c["signal"], sort_keys=True) for c in cells if c["design"] != "scalar"}
    for cell in cells:
        if cell["design"] == "scalar":
            design = f"scalar:{cell['signal']['statistic']}"
        else:  # several signals in the grid: each is its own row family
            design = cell["design"] if len(signals) == 1 else f"{cell['design']} [{_signal_label(cell['signal'])}]"
        if cell["error"]:
            rows.setdefault((design, "error"), {})[cell["family"]] = {"error": cell["error"]}
            continue
        for p in cell["points"]:
            size = "full" if p["size"] == 0 else str(p["size"])
            rows.setdefault((design, size), {})[cell["family"]] = p
    return rows


def _spread(p: dict) -> str:
    leads = [v for v in p["at_far_5pct"]["leads"] if v is not None]  # the episodes' leads at that threshold
    if len(leads) < 2:
        return ""
    q1, q3 = np.percentile(leads, [25, 75])
    return f", IQR {q1:.0f}-{q3:.0f}"


def _cell_text(p: dict | None) -> str:
    if p is None:
        return ""
    if "error" in p:
        return "error"
    a = p["at_far_5pct"]
    if a["detection"] == 0:
        return "no warning"
    return f"{a['median_lead']:.0f} ({a['detection']:.0%}{_spread(p)})"


def _best(points: list[tuple[str, dict]]) -> tuple[str, float]:
    best = max(points, key=lambda kp: kp[1]["at_far_5pct"]["mean_lead_fraction"], default=None)
    return (best[0], best[1]["at_far_5pct"]["mean_lead_fraction"]) if best else ("-", 0.0)


def render_markdown(result: Any, command: str) -> str:
    rows = _rows(result.cells)
    families = list(result.grid.families)
    signals = "; ".join(_signal_label(dataclasses.asdict(s)) for s in result.grid.signals)
    spec = result.grid.signals[0]
    lines = [
        "# probekit bench",
        "",
        f"Command: `{command}`",
        "",
        f"Grid: preset `{result.grid.preset}`, seeds {list(result.grid.seeds)}, sizes {list(result.grid.sizes)}, "
        f"signals: {signals} (record stride {spec.stride}), alarm rule `{result.grid.rule}` "
        f"{dict(result.grid.rule_params) or ''}, hit window: the last {result.grid.hit_fraction:.0%} of the time "
        "to onset.",
        "",
        "Cells: median lead in records before onset at a 5% false-alarm rate (null runs and quiet periods), "
        "with the detection rate and the interquartile range of the leads over episodes. `full` = every pool "
        "example (the complete-basis limit); `scalar:*` rows are the classical baselines on the full pool.",
        "",
        "| design | size | " + " | ".join(families) + " |",
        "|---|---|" + "---|" * len(families),
    ]
    for (design, size), by_family in rows.items():
        lines.append(f"| {design} | {size} | " + " | ".join(_cell_text(by_family.get(f)) for f in families) + " |")
    lines += ["", "## What this says", ""]
    for fam in families:
        designs = [(f"{d} {s}", r[fam]) for (d, s), r in rows.items()
                   if fam in r and "error" not in r[fam] and not d.startswith("scalar:")]
        scalars = [(d, r[fam]) for (d, s), r in rows.items() if fam in r and "error" not in r[fam] and d.startswith("scalar:")]
        best_d, lead_d = _best(designs)
        best_s, lead_s = _best(scalars)
        if lead_d == 0:
            verdict = "no 2RDM design gives early warning at a 5% false-alarm rate"
        else:
            verdict = f"best 2RDM design: {best_d} (mean lead {lead_d:.0%} of the time to onset)"
        if lead_s > 0 and lead_s >= lead_d:
            verdict += f"; a scalar baseline does as well or better ({best_s}, {lead_s:.0%})"
        lines.append(f"- **{fam}**: {verdict}.")
    lines += ["", "Leave-one-family-out: the design (and size) with the best mean area under the lead curve "
              "on the other families, scored on the held-out one.", ""]
    for fam in families:
        others = [f for f in families if f != fam]
        scores = {}
        for (d, s), r in rows.items():
            if d.startswith("scalar:") or not all(f in r and "error" not in r[f] for f in families):
                continue
            scores[(d, s)] = float(np.mean([r[f]["auc"] for f in others])) if others else 0.0
        if not scores:
            continue
        chosen = max(scores, key=scores.get)
        p = rows[chosen][fam]
        lines.append(f"- {fam}: chosen {chosen[0]} {chosen[1]} -> {_cell_text(p)}, area {p['auc']:.3f}")
    errors = [c for c in result.cells if c["error"]]
    if errors:
        lines += ["", "## Failed cells", ""] + [f"- {c['family']} / {c['design']}: {c['error']}" for c in errors]
    return "\n".join(lines) + "\n"


def write_report(result: Any, out_dir: str | Path, command: str) -> tuple[Path, Path]:
    """Write ``results.json`` (every cell; no timestamps: same grid, same file) and ``report.md``."""
    out = Path(out_dir)
    payload = {"grid": dataclasses.asdict(result.grid), "grid_key": result.grid.key(), "cells": result.cells}
    json_path, md_path = out / "results.json", out / "report.md"
    with atomic_file(json_path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True, default=float) + "\n")
    with atomic_file(md_path) as tmp:
        tmp.write_text(render_markdown(result, command))
    return json_path, md_path
