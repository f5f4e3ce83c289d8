"""The peer comparison in the benchmark report: per family, the 2RDM beside the classical indicators and the LLC.

One table and one figure per transition family. Rows: the 2RDM on the best
probe design and on random probes, the mean loss, the classical early-warning
indicators (rolling variance, lag-1 autocorrelation), the gradient norm, and
the LLC and its change. Each row is its own best configuration at a 5%
false-alarm rate (signal, rule and, for the 2RDM, size): optimistic for every
row alike. Next to the lead: what the signal costs per trajectory record, in
examples through the model (forward; forward+backward) and wall time on the
machine that ran the benchmark (``probekit.eval.peers.measure_costs``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from probekit.eval.bench.cells import Cell, Point

__all__ = ["peer_figures", "peer_rows", "render_peers"]

_SCALAR_NAMES = {"mean_drop": "mean loss (drop)", "mean_var": "rolling variance", "mean_ar1": "lag-1 autocorrelation",
                 "grad_norm": "gradient norm"}
_PEER_NAMES = {"llc": "LLC", "llc_dev": "LLC change"}


def _frac(p: Point) -> float:
    return p.lead_fraction


def _config(cell: Cell, p: Point) -> str:
    from probekit.eval.bench import RuleSpec

    s = cell.signal
    rule = RuleSpec.from_dict((cell.peer or {}).get("checkpoint_rule") or cell.rule).label
    if cell.kind == "peer":
        return f"every {s['stride']} records, `{rule}`"
    if cell.kind == "scalar":
        return f"W={s['window']}, `{rule}`"
    extra = "" if s["detrend"] == "none" else f", {s['detrend']}"
    stride = "" if s["stride"] == 1 else f", stride {s['stride']}"
    size = "full pool" if p.size == 0 else f"{p.size} probes"
    return f"{cell.design} {size}, {s['statistic']} W={s['window']}{stride}{extra}, `{rule}`"


def _best(candidates: list[tuple[Cell, Point]]) -> tuple[Cell, Point] | None:
    best = None
    for cell, p in candidates:  # strict '>': ties go to the first in grid order
        if best is None or _frac(p) > _frac(best[1]):
            best = (cell, p)
    return best


def _costs(cells: list[Cell]) -> dict:
    return next((c.peer["costs"] for c in cells if c.peer and c.peer.get("costs")), {})


def _probe_cost(costs: dict, size: int) -> dict | None:
    keys = sorted((int(k.split(":")[1]), k) for k in costs if k.startswith("probes:"))
    if not keys:
        return None
    if size == 0:  # the full pool: the largest measured
        return costs[keys[-1][1]]
    return costs.get(f"probes:{size}")


def peer_rows(cells: list[Cell], family: str) -> list[dict]:
    """The comparison rows of one family: name, the chosen cell and point, and its cost per record."""
    ok = [c for c in cells if c.family == family and c.ok]
    costs = _costs(ok)
    pool = max((int(k.split(":")[1]) for k in costs if k.startswith("probes:")), default=None)
    rows = []

    def add(name: str, candidates: list, cost: dict | None, cost_note: str = "") -> None:
        best = _best(candidates)
        if best is not None:  # picked_from: how many configurations the best was picked from
            rows.append({"name": name, "cell": best[0], "point": best[1], "cost": cost, "cost_note": cost_note,
                         "picked_from": len(candidates)})

    designs = [(c, p) for c in ok if c.kind == "design" for p in c.points]
    best = _best(designs)
    if best is not None:
        add("2RDM, best design", designs, _probe_cost(costs, best[1].size))
    lofo = _leave_one_out(cells, family)
    if lofo is not None:
        (cell, point), n = lofo
        rows.append({"name": "2RDM, chosen on the other families", "cell": cell, "point": point,
                     "cost": _probe_cost(costs, point.size), "cost_note": "", "picked_from": n})
    rand = [(c, p) for c, p in designs if c.design == "random"]
    best_r = _best(rand)
    if best_r is not None:
        add("2RDM, random probes", rand, _probe_cost(costs, best_r[1].size))
    for stat, name in _SCALAR_NAMES.items():
        cand = [(c, p) for c in ok if c.kind == "scalar" and c.statistic == stat for p in c.points]
        if stat == "grad_norm":
            add(name, cand, costs.get("grad_norm"), "the training step's own gradient")
        else:
            add(name, cand, _probe_cost(costs, 0), f"on the full pool ({pool}); on n probes it shares the 2RDM's pass")
    for stat, name in _PEER_NAMES.items():
        cand = [(c, p) for c in ok if c.kind == "peer" and c.statistic == stat for p in c.points]
        add(name, cand, costs.get("llc"))
    return rows


def _leave_one_out(cells: list[Cell], family: str) -> tuple[tuple[Cell, Point], int] | None:
    """The 2RDM configuration (signal, rule, design, size) with the best mean area under the lead curve
    on the other families, and its point on this one: the honest pick (the report's LOFO line); with
    the number of configurations it was picked from."""
    import json

    table: dict[str, dict[str, tuple[Cell, Point]]] = {}
    families = set()
    for c in cells:
        if c.kind != "design" or c.error:
            continue
        families.add(c.family)
        for p in c.points:
            key = json.dumps([c.signal, c.rule, c.design, p.size], sort_keys=True)
            table.setdefault(key, {})[c.family] = (c, p)
    others = sorted(families - {family})
    complete = {k: v for k, v in table.items() if family in v and all(f in v for f in others)}
    if not complete or not others:
        return None
    chosen = max(complete, key=lambda k: sum(complete[k][f][1].auc for f in others) / len(others))
    return complete[chosen][family], len(complete)


def _lead_text(p: Point) -> str:
    a = p.at_far_5pct
    if not a.detection:
        return "no warning"
    leads = p.seed_median_leads
    spread = f", seeds {min(leads):.0f}-{max(leads):.0f}" if len(leads) > 1 else ""
    return f"{a.median_lead:.0f} ({a.detection:.0%}{spread})"


def _passes_text(row: dict) -> str:
    """Model passes per trajectory record: one batched forward over the probes, or the LLC's SGLD batches."""
    cell = row["cell"]
    if row["name"] == "gradient norm":
        return "0 (the training step's)"
    if cell.kind != "peer":
        return "1 fwd"
    s, k = cell.peer["llc"], cell.signal["stride"]
    fwd = s["num_chains"] * s["num_init_loss_batches"] / k
    fb = s["num_chains"] * (s["num_draws"] + s["num_burnin_steps"]) / k
    return f"{fwd:.1f} fwd + {fb:.1f} fwd+bwd, batch {s['batch_size']}"


def _cost_text(cost: dict | None) -> tuple[str, str]:
    if cost is None:
        return "", ""
    fwd, fb = cost["forward_examples"], cost["forward_backward_examples"]
    examples = f"{fwd:,.0f}" + (f" + {fb:,.0f} fwd+bwd" if fb else "")
    sec = cost.get("seconds")
    return examples, ("" if sec is None else f"{sec * 1e3:.2f}")


def render_peers(result: Any) -> list[str]:
    """The report's peer section (empty without peer cells)."""
    cells = result.cells
    peer = [c for c in cells if c.kind == "peer"]
    if not peer:
        return []
    settings = {}
    for c in peer:
        settings.setdefault(c.family, (c.peer or {}).get("llc", {}))
    lines = ["", "## Peers: the 2RDM beside the classical indicators and the LLC", "",
             "Per family, each signal at its own best configuration at a 5% false-alarm rate (named), picked from "
             "the number of configurations in 'picked from'. A best-of is optimistic, the more so the more "
             "configurations it picks from (the 2RDM's best design picks from every signal, rule, design and size; "
             "the LLC's from its signal x the rules), so the row 'chosen on the other families' gives the 2RDM "
             "configuration with the best mean area under the lead curve on the other families, scored here: the "
             "honest pick. Lead: median records before the onset (warning rate, range of the per-seed median "
             "leads); mean lead fraction: lead over time to onset, a miss counting 0. Cost per trajectory record: "
             "examples through the model (forward; forward+backward) and wall milliseconds on this machine, one "
             "thread. The 2RDM on n probes is one forward pass over them; the LLC costs chains x draws x batch "
             "forward+backward examples per checkpoint, divided by the checkpoint stride. Figures: "
             "`figures/peers-<family>.png`.", ""]
    first = next(iter(settings.values()))
    failed = [fam for fam, st in settings.items() if st.get("calibrated") is False]
    lines.append(f"LLC: devinterp {first.get('devinterp', '?')} `llc()` (SGLD), {first['num_chains']} chains x "
                 f"{first['num_draws']} draws, batch {first['batch_size']}, localization gamma {first['localization']:g}, "
                 f"n_beta = B / log B = {first['n_beta']:.2f} (devinterp's default_nbeta); the step size eps per family "
                 "from `benchmarks/calibrate_llc.py` (devinterp's guidance: the largest eps whose chains stay finite, "
                 "positive and settled, at a quarter, half and the end of seed 0's run; probekit's own run and what "
                 "it found are in its docs/bench/llc_calibration.md): "
                 + ", ".join(f"{fam} {s['lr']:g}" for fam, s in settings.items()) + "."
                 + (f" For {' and '.join(failed)} no eps passed (negative estimates: the chains find lower loss than "
                    "the checkpoint), so the largest was kept." if failed else "")
                 + " The alarm rules count checkpoints, not records: persistence 1, z-score baseline 50/k (>= 8), "
                   "running-min memory 64/k (>= 4). The episodes keep the record grid's boundaries (quiet period, "
                   "hit window, onset: an alarm after the onset is late, and a hit window with no checkpoint in it "
                   "cannot be hit), and leads are counted in records from the alarm to the true onset.")
    verdicts = []
    for fam in result.grid.families:
        rows = peer_rows(cells, fam)
        if not rows:
            continue
        lines += ["", f"### {fam}", "",
                  "| signal | lead at 5% FAR | mean lead fraction | passes / record | examples / record | ms / record "
                  "| configuration | picked from |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            ex, ms = _cost_text(r["cost"])
            note = f" ({r['cost_note']})" if r["cost_note"] else ""
            lines.append(f"| {r['name']} | {_lead_text(r['point'])} | {_frac(r['point']):.0%} | {_passes_text(r)} | "
                         f"{ex}{note} | {ms} | {_config(r['cell'], r['point'])} | {r['picked_from']} |")
        verdicts.append(_verdict(fam, rows))
    lines += ["", "Where a peer wins:", ""] + verdicts
    return lines


def _median_lead(r: dict) -> str:
    a = r["point"].at_far_5pct
    return "no warning" if not a.detection else f"median lead {a.median_lead:.0f} records at {a.detection:.0%}"


def _cost_ratio(r: dict, ref: dict) -> str:
    """The wall-time cost per record of row r as a multiple of the reference row's ('' when unknown)."""
    a, b = (r["cost"] or {}).get("seconds"), (ref["cost"] or {}).get("seconds")
    if not a or not b:
        return ""
    return f", at {a / b:,.0f}x its wall time per record" if a >= b else f", at 1/{b / a:,.0f} of its wall time per record"


def _verdict(fam: str, rows: list[dict]) -> str:
    """One plain sentence: does a peer warn earlier than the 2RDM (by mean lead fraction at 5% FAR), at what cost."""
    by = {r["name"]: r for r in rows}
    rdm = by.get("2RDM, best design")
    peers = [r for r in rows if not r["name"].startswith("2RDM")]
    if rdm is None or not peers:
        return f"- **{fam}**: nothing to compare."
    best_peer = max(peers, key=lambda r: _frac(r["point"]))
    a, b = _frac(rdm["point"]), _frac(best_peer["point"])
    if a == 0 and b == 0:
        return f"- **{fam}**: no signal warns at a 5% false-alarm rate."
    llc = [r for r in peers if r["name"].startswith("LLC")]
    best_llc = max(llc, key=lambda r: _frac(r["point"])) if llc else None
    if b > a:
        text = (f"- **{fam}**: a peer wins: {best_peer['name']}, mean lead fraction {b:.0%} ({_median_lead(best_peer)}) "
                f"against the 2RDM's best {a:.0%} ({_median_lead(rdm)})"
                + (_cost_ratio(best_peer, rdm) if best_peer["cell"].kind == "peer" else
                   ", on the full pool (on the 2RDM's probes it shares their forward pass)") + ".")
    elif round(b, 2) == round(a, 2):
        text = (f"- **{fam}**: a tie: the 2RDM's best and {best_peer['name']} both reach a mean lead fraction of "
                f"{a:.0%} ({_median_lead(rdm)} against {_median_lead(best_peer)}"
                + (_cost_ratio(best_peer, rdm) if best_peer["cell"].kind == "peer" else "") + ").")
    else:
        text = (f"- **{fam}**: the 2RDM warns earliest: mean lead fraction {a:.0%} ({_median_lead(rdm)}); the best peer, "
                f"{best_peer['name']}: {b:.0%}.")
    if best_llc is not None and best_llc is not best_peer:
        text += (f" The LLC's best ({best_llc['name']}): {_frac(best_llc['point']):.0%}"
                 f"{_cost_ratio(best_llc, rdm)}.")
    honest = by.get("2RDM, chosen on the other families")
    text += (f" The 2RDM's best is picked from {rdm['picked_from']} configurations"
             + (f"; the one picked on the other families (of {honest['picked_from']}) reaches "
                f"{_frac(honest['point']):.0%} ({_median_lead(honest)})" if honest else "") + ".")
    return text


def peer_figures(result: Any, out_dir: str | os.PathLike) -> list[Path]:
    """One figure per family: each row's alarm leads per episode at its 5%-FAR threshold, coloured by seed."""
    from probekit.eval.reports.bench_figures import _plt, _save, _title

    written = []
    if not any(c.kind == "peer" for c in result.cells):
        return written
    for fam in result.grid.families:
        rows = peer_rows(result.cells, fam)
        if not rows:
            continue
        plt = _plt()
        fig, ax = plt.subplots(1, 1, figsize=(10, 0.55 * len(rows) + 1.8), constrained_layout=True)
        seeds = sorted({e["seed"] for r in rows for e in r["point"].episodes})
        colours = {s: f"C{i % 10}" for i, s in enumerate(seeds)}
        leads_all = [v for r in rows for v in r["point"].at_far_5pct.leads if v is not None]
        span = max(leads_all, default=1.0)
        miss_x = -0.08 * max(span, 1.0)
        labels = []
        for y, r in enumerate(rows):
            eps = r["point"].episodes
            leads = r["point"].at_far_5pct.leads
            for i, (e, lead) in enumerate(zip(eps, leads)):
                jitter = (i % 5 - 2) * 0.06
                if lead is None:
                    ax.plot(miss_x, y + jitter, marker="x", color=colours[e["seed"]], ms=6)
                else:
                    ax.plot(lead, y + jitter, marker="o", color=colours[e["seed"]], ms=5, alpha=0.85)
            ex, ms = _cost_text(r["cost"])
            labels.append(f"{r['name']}  [{ex} ex/rec]" if ex else r["name"])
        ax.axvline(0, color="0.3", lw=1)
        ax.axvline(miss_x / 2, color="0.8", lw=0.8, ls=":")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("alarm lead: trajectory records before the onset (x left of the dotted line: no alarm "
                      "before the onset)")
        for s in seeds:
            ax.plot([], [], "o", color=colours[s], label=f"seed {s}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
        _title(ax, f"{fam}: each signal at its best configuration at a 5% false-alarm rate; one mark per episode "
                   "(transition x seed); cost per record in brackets")
        written.append(_save(fig, Path(out_dir) / "figures" / f"peers-{fam}.png"))
    return written
