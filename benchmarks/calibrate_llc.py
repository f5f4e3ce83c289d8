"""Calibrate devinterp's SGLD step size for each reference family, by devinterp's own guidance.

devinterp's calibration notebooks (examples/sgld_calibration.ipynb, epsilon_beta.ipynb) say:
take the step size epsilon as large as it can be without the chains diverging or failing to
converge; the loss traces should flatten out, should not sink below the loss at the start
(no negative LLC dips), and the same settings should serve every checkpoint compared. This
script applies that, per family, on seed 0's kept checkpoints at about a quarter, half and
all of the run: with n_beta = B / log B (devinterp's default_nbeta), localization gamma and
the chain budget fixed, it sweeps epsilon over half-decades and keeps the largest one whose
estimates are finite and positive, whose traces have settled (last quarter within 20% of
the third, relative to the rise above the initial loss) and spend under 25% of their steps
below the initial loss, at every one of those checkpoints. Where no epsilon passes at all
three, it says so and takes the one that passes at the most (then the largest).

    python benchmarks/calibrate_llc.py --cache-dir DIR [--families ...] [--jobs 2] [--out FILE.json]

The trajectories must keep per-record checkpoints (``probekit bench --peers`` records them).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

LRS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # devinterp: eps above 1e-2 is typically unstable
FLAT_MAX = 0.2
BELOW_INIT_MAX = 0.25


def passes(est: dict) -> bool:
    import math

    return (math.isfinite(est["llc"]) and est["llc"] > 0 and math.isfinite(est["flat"])
            and est["flat"] < FLAT_MAX and est["below_init"] < BELOW_INIT_MAX)


def calibrate_family(job: tuple) -> dict:
    family, cache_dir = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from probekit.eval.peers.llc import LLCSettings, estimate_llc, llc_data
    from probekit.eval.peers.scoring import base_settings, checkpoint_every
    from probekit.eval.store.runner import load_or_record

    traj = load_or_record(family, "default", 0, cache_dir=cache_dir, progress=False,
                          checkpoint_every=checkpoint_every(family, "default"))
    kept = sorted(traj.record_checkpoints())
    probes = sorted({kept[len(kept) // 4], kept[len(kept) // 2], kept[-1]})
    data = llc_data(traj)
    rows = []
    for lr in LRS:
        settings = LLCSettings(**{**base_settings().__dict__, "lr": lr})
        for record in probes:
            est = estimate_llc(traj.model(f"record-{record:05d}"), data, settings)
            rows.append({"lr": lr, "record": record, **{k: est[k] for k in ("llc", "llc_std", "flat", "below_init", "seconds")},
                         "passes": passes(est)})
    by_lr = {lr: sum(r["passes"] for r in rows if r["lr"] == lr) for lr in LRS}
    full = [lr for lr in LRS if by_lr[lr] == len(probes)]
    chosen = max(full) if full else max(LRS, key=lambda lr: (by_lr[lr], lr))
    return {"family": family, "probes": probes, "rows": rows, "chosen_lr": chosen,
            "all_pass": bool(full), "passing": {str(k): v for k, v in by_lr.items()}, "source": data.source}


def main(argv: list[str] | None = None) -> int:
    from probekit.eval.bench import transition_families

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--families", nargs="*", default=list(transition_families()))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=None, help="write every estimate and the choice as JSON")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    jobs = [(f, args.cache_dir) for f in args.families]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(calibrate_family, jobs))
    from probekit.eval.peers.scoring import base_settings

    print(f"SGLD calibration (devinterp), base settings: {base_settings().label()} with eps swept over "
          f"{', '.join(f'{lr:g}' for lr in LRS)}")
    print(f"pass: LLC finite and > 0, |last - third quarter| / (last quarter - init) < {FLAT_MAX}, "
          f"under {BELOW_INIT_MAX:.0%} of the trace below the initial loss\n")
    print(f"{'family':<16}{'record':>7}" + "".join(f"{lr:>14g}" for lr in LRS))
    for res in results:
        for record in res["probes"]:
            cells = []
            for lr in LRS:
                r = next(x for x in res["rows"] if x["lr"] == lr and x["record"] == record)
                cells.append(f"{r['llc']:.2f}{'' if r['passes'] else '*'} ({min(r['flat'], 9.99):.2f})".rjust(14))
            print(f"{res['family']:<16}{record:>7}" + "".join(cells))
        note = "" if res["all_pass"] else "  (no eps passes at every checkpoint: the one passing at most)"
        print(f"{'':<16}chosen eps = {res['chosen_lr']:g}{note}; data: {res['source']}\n")
    print("cells: LLC estimate, * = fails a criterion, (flatness). "
          f"{time.perf_counter() - t0:.0f} s on {args.jobs} processes")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
