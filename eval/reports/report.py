"""The benchmark report: every cell as JSON, and a basis-set-style markdown report.

- The main tables are the grid's primary signal under its primary rule: rows are
  designs x sizes (``full`` = the whole pool, the complete-basis limit; scalar
  baselines last), columns are transition families. Two scores at one threshold
  per cell point, matched to a 5% false-alarm rate: *warning* (median lead in
  records before the onset, the warning rate and the seed spread) and
  *detection* (median latency alarm - onset, the detection rate and the mean
  latency as a fraction of onset to midpoint). Each design row is marked
  better / worse / indistinguishable from random at the same size
  (``probekit.eval.scoring.paired``: paired by seed, Holm-corrected in the family).
- What the rates rest on: per family, the quiet units and episodes, the smallest
  non-zero false-alarm rate they resolve, and the smallest p-value the seeds allow.
- With several signals or rules, an axes table gives each signal x rule its
  best design and size (saying how many it was picked from) beside the pick made on
  the other families, the scalar baselines under each rule, and collapsed full
  tables for every signal x rule.
- Below, the report says per family, in one sentence, whether any design is
  distinguishable from random and whether any beats the scalar baselines, then the
  best configuration (of how many) beside the leave-one-family-out pick: the
  configuration with the best mean area under the lead curve on the other
  families, scored on the held-out one (the honest answer to "which design should I use?").

Each section is one function of ``(result, table, tests)``; the report reads cells through
:mod:`probekit.eval.bench.cells`, never their JSON.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from probekit.atomic import atomic_file
from probekit.eval.bench.cells import SCHEMA_VERSION
from probekit.eval.reports.tables import (Table, best_of, both_text, by_size, cell_text, detect_text, lofo, marker,
                                          render_table, rule_label, scored, short_text, signal_label,
                                          signal_rule_pairs, table_of)

__all__ = ["render_markdown", "write_report"]


# -- the sections --------------------------------------------------------------------------------
def _preset_text(grid: Any) -> str:
    """The reference families' preset, when the grid has any besides the user's runs."""
    users = {u.name for u in grid.trajectories}
    return f"preset `{grid.preset}`" if any(f not in users for f in grid.families) else "your runs only"


def _user_lines(grid: Any) -> list[str]:
    """The user's own runs of the grid: where each is, its null runs, concerns and pilot span, and what
    its seeds mean (the preset above is the reference families')."""
    from probekit.eval.bench.user_runs import unscored_designs

    if not grid.trajectories:
        return []
    lines = ["", "Your runs (`probekit record` trajectories; on each, the seeds are selection seeds: probe draws "
                 "on that one run, so its rates and tests are over draws, not over training runs):", ""]
    for u in grid.trajectories:
        nulls = ", ".join(f"`{n}`" for n in u.nulls) or "none (false alarms from the quiet period alone)"
        concerns = "; ".join(f"{n} = {' + '.join(f'`{x}`' for x in specs)}" for n, specs in u.concerns) or "none"
        pilot = next((d.pilot for d in grid.designs_for(u.name) if d.pilot), None)
        skipped = "; ".join(f"{label}: {why}" for label, why in unscored_designs(grid, u.name).items())
        lines.append(f"- **{u.name}**: `{u.path}`; null runs: {nulls}; concerns: {concerns}"
                     + (f"; pilot span: the first {pilot} records" if pilot else "")
                     + (f"; not scored here: {skipped}" if skipped else ""))
    return lines


def _header(result: Any, rows: Table, tests: dict, command: str) -> list[str]:
    grid = result.grid
    combos = signal_rule_pairs(grid)
    return [
        "# probekit bench",
        "",
        f"Command: `{command}`",
        "",
        f"Grid: {_preset_text(grid)}, {_seeds_text(grid.seeds)} (null controls: "
        f"{_seeds_text(grid.control_seeds)}), sizes {list(grid.sizes)}, "
        f"designs {', '.join(d.label for d in grid.designs)}; "
        f"signals: {'; '.join(c for c in dict.fromkeys(s for s, _ in combos))}; "
        f"alarm rules: {'; '.join(f'`{r.label}`' for r in grid.rules)} (each rule's threshold swept); "
        f"hit window: the last {grid.hit_fraction:.0%} of the time to onset.",
        *_user_lines(grid),
        "",
        "Two scores per design and size, at one threshold matched to a 5% false-alarm rate over the quiet units "
        "(null runs and the episodes' quiet periods). **Warning**: median lead in records before the onset (an "
        "alarm in the hit window), with the warning rate and the seed spread (the range of the per-seed median "
        "leads). **Detection**: the first alarm from the hit window's start on, if it comes by the transition's "
        "midpoint; median latency alarm - onset in records (negative: before the onset), with the detection rate "
        "and the mean latency as a fraction of onset to midpoint. `full` = every pool example (the complete-basis "
        "limit); `scalar:*` rows are the classical baselines on the full pool.",
    ]


def _main_table(result: Any, rows: Table, tests: dict) -> list[str]:
    grid = result.grid
    primary = (signal_label(dataclasses.asdict(grid.signals[0])), grid.rules[0].label)
    design_keys = [k for k in rows if (k.signal, k.rule) == primary]
    scalar_keys = [k for k in rows if k.signal == "scalar" and k.rule == primary[1]]
    families = list(grid.families)
    m = ", ".join(f"{f} {t.m}" for f, t in tests.items())
    legend = ("Marks: each design at each size against random probes of the same size, paired by seed (each "
              "at its own 5%-FAR threshold; a seed's value over its episodes: mean lead fraction for warning, "
              "detection rate for detection), sign-flip permutation p-values Holm-corrected over the family's "
              f"comparisons ({m}): ↑ better, ↓ worse, ≈ indistinguishable at alpha 0.05. What the seeds allow is "
              "under \"What the rates rest on\".")
    lines = ["", f"## Probe designs: {primary[0]}, rule `{primary[1]}`", "", legend, "",
             "### Warning: median lead (warning rate, seed spread)", ""]
    keys = design_keys + scalar_keys
    lines += render_table(rows, keys, families, "design | size", by_size, mark=marker(tests, "warning"))
    lines += ["", "### Detection: median latency (detection rate, mean latency / onset-to-midpoint)", ""]
    return lines + render_table(rows, keys, families, "design | size", by_size, text=detect_text,
                                mark=marker(tests, "detection"))


def _counts(result: Any, rows: Table, tests: dict) -> list[str]:
    """Per family, what its rates rest on: quiet units, episodes, the smallest FAR and p-value they resolve."""
    from probekit.eval.bench.user_runs import quiet_note, user_family

    lines = ["", "## What the rates rest on", "",
             "A false-alarm rate is a count over quiet units, a rate over episodes: their numbers bound what "
             "the tables can say. A 5% false-alarm rate set on fewer than 20 quiet units allows no false alarm "
             "at all (the threshold sits above every quiet unit's largest score).", "",
             "| family | pool (concern slices in it) | seeds | quiet units (null runs + quiet periods) "
             "| smallest non-zero FAR | episodes | paired comparisons | smallest possible p | |",
             "|---|---|---|---|---|---|---|---|---|"]
    for fam in result.grid.families:
        p = next((r[fam] for k, r in rows.items() if scored(r.get(fam)) and k.signal != "scalar"), None)
        p = p or next((r[fam] for r in rows.values() if scored(r.get(fam))), None)
        t = tests.get(fam)
        tested = "" if t is None else f"{t.m}" if t.m else "none"
        smallest = "" if t is None or not t.m else f"{t.smallest_p:.4g} ({t.n_seeds} seeds)"
        pool = _pool_text(getattr(result, "pools", {}).get(fam))
        if p is None or p.quiet_units is None:
            lines.append(f"| {fam} | {pool} | {len(result.grid.seeds)} | n/a | n/a | "
                         f"{'' if p is None else p.n_episodes} | {tested} | {smallest} | |")
            continue
        q = p.quiet_units
        note = "5% FAR = no false alarm at all" if q < 20 else ""
        user = user_family(result.grid, fam)
        if user is not None:  # a user's run: seeds are probe draws, its quiet units one run's
            note = quiet_note(user, len(result.grid.seeds)) + ("; " if note else "") + note
        if t is not None and t.m and not t.resolvable:
            note += ("; " if note else "") + "no comparison can be significant"
        far = f"{1 / q:.1%}" if q else "none"
        lines.append(f"| {fam} | {pool} | {len(result.grid.seeds)} | {q} ({p.null_runs} + {q - p.null_runs}) | {far} | "
                     f"{p.n_episodes} | {tested} | {smallest} | {note} |")
    return lines


def _seeds_text(seeds: tuple) -> str:
    seeds = list(seeds)
    if len(seeds) > 3 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return f"seeds {seeds}"


def _pool_text(info: dict | None) -> str:
    """``1400 (slice 42 = 3.0%)``: the pool's size and each concern's share of it."""
    if not info:
        return ""
    n = info["size"]
    shares = ", ".join(f"{name} {k} = {k / n:.1%}" for name, k in info.get("concerns", {}).items())
    return f"{n}" + (f" ({shares})" if shares else "")


def _axes(result: Any, rows: Table, tests: dict) -> list[str]:
    combos = signal_rule_pairs(result.grid)
    families = list(result.grid.families)
    if len(combos) <= 1:
        return []
    lines = ["", "## Signal and rule axes", "",
             "Each signal under each alarm rule, per family: the best design and size at a 5% false-alarm rate "
             "(by mean lead fraction), with how many it was picked from, and beside it the pick made on the other "
             "families (the design and size with the best mean area under the lead curve there, scored here). A "
             "best-of is optimistic, the more so the more it picks from; the other families' pick is the honest one. "
             "Cells: warning lead (rate) · detection rate. The full tables are at the end.", ""]
    lines += ["| signal | rule | " + " | ".join(families) + " |", "|" + "---|" * (2 + len(families))]
    for sig, rule in combos:
        keys = [k for k in rows if (k.signal, k.rule) == (sig, rule)]
        texts = []
        for fam in families:
            pts = [(f"{k.design} {k.size}", rows[k][fam]) for k in keys if scored(rows[k].get(fam))]
            name, p = best_of(pts)
            if p is None:
                texts.append("")
                continue
            text = f"best of {len(pts)}: {short_text(p)}" + ("" if p.lead_fraction == 0 else f" [{name}]")
            chosen, n = lofo(rows, keys, fam, families)
            if chosen is not None:
                text += (f"; other families' pick (of {n}): {short_text(rows[chosen][fam])} "
                         f"[{chosen.design} {chosen.size}]")
            texts.append(text)
        lines.append(f"| {sig} | `{rule}` | " + " | ".join(texts) + " |")
    lines += ["", "Scalar baselines (full pool) under each rule:", ""]
    keys = [k for k in rows if k.signal == "scalar"]  # grid order: each baseline, under each rule
    return lines + render_table(rows, keys, families, "baseline | rule", lambda k: f"{k.design} | `{k.rule}`",
                                text=both_text)


def _against_scalars(result: Any, rows: Table, fam: str) -> str:
    """Whether any design of the main table beats the best scalar baseline (point estimates, untested)."""
    grid = result.grid
    primary = (signal_label(dataclasses.asdict(grid.signals[0])), grid.rules[0].label)
    designs = [(f"{k.design} {k.size}", r[fam]) for k, r in rows.items()
               if (k.signal, k.rule) == primary and scored(r.get(fam))]
    scalars = [(k.design, r[fam]) for k, r in rows.items()
               if k.signal == "scalar" and k.rule == primary[1] and scored(r.get(fam))]
    if not scalars or not designs:
        return "no scalar baseline to compare with"
    lead_name, ls = best_of(scalars)
    with_det = [(n, p) for n, p in scalars if p.has_detection]
    det_name, ds = max(with_det, key=lambda np_: np_[1].at_far_5pct.detected) if with_det else ("", None)
    lead = [n for n, p in designs if p.lead_fraction > ls.lead_fraction]
    det = [n for n, p in designs
           if ds is not None and p.has_detection and p.at_far_5pct.detected > ds.at_far_5pct.detected]
    which = "the scalar baseline" if len(scalars) == 1 else f"the best of {len(scalars)} scalar baselines"
    base = f"{which} (mean lead: {lead_name} {ls.lead_fraction:.0%}" + (
        f"; detection: {det_name} {ds.at_far_5pct.detected:.0%})" if ds is not None else ")")
    if not lead and not det:
        return f"no design beats {base}"
    said = [f"{_listed(names, len(designs))} by {what}"
            for names, what in ((lead, "mean lead"), (det, "detection rate")) if names]
    return f"{base} is beaten by {'; '.join(said)} (point estimates, not tested)"


def _listed(names: list[str], out_of: int, most: int = 6) -> str:
    if len(names) <= most:
        return ", ".join(names)
    return f"{len(names)} of the {out_of} design rows ({', '.join(names[:most])}, ...)"


def _verdicts(result: Any, rows: Table, tests: dict) -> list[str]:
    families = list(result.grid.families)
    lines = ["", "## What this says", "",
             "Per family: whether any design is distinguishable from random and whether any beats the scalar "
             "baselines (primary signal and rule), then the best 2RDM configuration over every signal, rule, design "
             "and size (of how many) beside the one picked on the other families.", ""]
    design_keys = [k for k in rows if k.signal != "scalar"]
    for fam in families:
        t = tests.get(fam)
        sentence = (t.sentence() if t is not None else "no paired test") + "; " + _against_scalars(result, rows, fam)
        lines.append(f"- **{fam}**: {sentence}.")
        designs = [(f"{k.design} {k.size} [{k.signal}, `{k.rule}`]", rows[k][fam]) for k in design_keys
                   if scored(rows[k].get(fam))]
        scalars = [(f"{k.design} [`{k.rule}`]", r[fam]) for k, r in rows.items()
                   if scored(r.get(fam)) and k.signal == "scalar"]
        best_d, pd = best_of(designs)
        best_s, ps = best_of(scalars)
        lead_d = pd.lead_fraction if pd else 0.0
        lead_s = ps.lead_fraction if ps else 0.0
        if lead_d == 0:
            best = f"no 2RDM configuration (of {len(designs)}) gives early warning at a 5% false-alarm rate"
        else:
            best = (f"best of {len(designs)} 2RDM configurations: {best_d}, {both_text(pd)}, mean lead "
                    f"{lead_d:.0%} of the time to onset")
        chosen, n = lofo(rows, design_keys, fam, families)
        if chosen is not None:
            p = rows[chosen][fam]
            best += (f"; picked on the other families (of {n}): {chosen.design} {chosen.size} [{chosen.signal}, "
                     f"`{chosen.rule}`], {both_text(p)}, mean lead {p.lead_fraction:.0%}")
        if lead_s > 0 and lead_s >= lead_d:
            best += (f"; a scalar baseline does as well or better: {best_s}, {cell_text(ps)}, mean lead "
                     f"{lead_s:.0%}")
        lines.append(f"  - {best}.")
    return lines


def _leave_one_family_out(result: Any, rows: Table, tests: dict) -> list[str]:
    families = list(result.grid.families)
    if len(families) < 2:  # nothing to pick on: no other family
        return []
    keys = [k for k in rows if k.signal != "scalar"]
    lines = ["", "Leave-one-family-out: the 2RDM configuration (signal, rule, design and size) with the best mean "
             "area under the lead curve on the other families, scored on the held-out one.", ""]
    for fam in families:
        chosen, n = lofo(rows, keys, fam, families)
        if chosen is None:
            continue
        p = rows[chosen][fam]
        lines.append(f"- {fam}: chosen {chosen.design} {chosen.size} [{chosen.signal}, `{chosen.rule}`] (of {n}) -> "
                     f"{both_text(p)}, area {p.auc:.3f}")
    return lines


def _every_table(result: Any, rows: Table, tests: dict) -> list[str]:
    combos = signal_rule_pairs(result.grid)
    if len(combos) <= 1:
        return []
    lines = ["", "## Every signal and rule, design by size", "",
             "Cells: warning (as in the main table) · detection (as in the main table).", ""]
    for sig, rule in combos:
        keys = [k for k in rows if (k.signal, k.rule) == (sig, rule)]
        lines += ["<details>", f"<summary>{sig}, rule <code>{rule}</code></summary>", ""]
        lines += render_table(rows, keys, list(result.grid.families), "design | size", by_size, text=both_text)
        lines += ["", "</details>", ""]
    return lines


def _failed(result: Any, rows: Table, tests: dict) -> list[str]:
    errors = [c for c in result.cells if c.error]
    if not errors:
        return []
    return ["", "## Failed cells", ""] + [
        f"- {c.family} / {c.design} [{signal_label(c.signal)}, `{rule_label(c.rule)}`]: {c.error}" for c in errors]


def render_markdown(result: Any, command: str, tests: dict | None = None) -> str:
    from probekit.eval.reports.peer_report import render_peers
    from probekit.eval.scoring.paired import grid_tests

    rows = table_of([c for c in result.cells if c.kind != "peer"])  # the peers have their own section
    tests = grid_tests(result) if tests is None else tests
    lines = _header(result, rows, tests, command)
    for section in (_main_table, _counts, _axes, _verdicts, _leave_one_family_out, _every_table):
        lines += section(result, rows, tests)
    lines += render_peers(result)
    lines += _failed(result, rows, tests)
    return "\n".join(lines) + "\n"


CURVE_DECIMALS = 4  # the curves in results.json: rates and lead fractions, to 1e-4


def _rounded_curves(cell: dict) -> dict:
    points = [{**p, "curve": {k: [round(v, CURVE_DECIMALS) for v in vals] for k, vals in p["curve"].items()}}
              if "curve" in p else p for p in cell.get("points", [])]
    return {**cell, "points": points}


def write_report(result: Any, out_dir: str | Path, command: str) -> tuple[Path, Path]:
    """Write ``results.json`` (every cell, every design's rankings and the paired tests against random
    under the primary signal and rule; no timestamps: same grid, same file) and ``report.md``.

    results.json is compact JSON, one cell per line, with the threshold curves rounded to
    1e-4 (the full grid's file is ~10x smaller); every other number is as computed, and
    ``cells/`` keeps the curves unrounded.
    """
    from probekit.eval.scoring.paired import grid_tests

    out = Path(out_dir)
    tests = grid_tests(result)
    head = {"grid": dataclasses.asdict(result.grid), "grid_key": result.grid.key(), "schema_version": SCHEMA_VERSION,
            "pools": getattr(result, "pools", {}),
            "rankings": [r.to_json() for _, r in sorted(result.rankings.items())],
            "paired": [t.to_json() for t in tests.values()]}
    cells = [json.dumps(_rounded_curves(c.to_json()), sort_keys=True, separators=(",", ":"), default=float)
             for c in result.cells]
    text = json.dumps(head, sort_keys=True, default=str)[:-1] + ',"cells":[\n' + ",\n".join(cells) + "\n]}\n"
    json_path, md_path = out / "results.json", out / "report.md"
    with atomic_file(json_path) as tmp:
        tmp.write_text(text)
    with atomic_file(md_path) as tmp:
        tmp.write_text(render_markdown(result, command, tests))
    return json_path, md_path
