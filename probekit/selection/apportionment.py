"""Sequential apportionment: which stratum gets the k-th probe, so that every prefix
keeps the target shares. Shared by every strategy that interleaves sources
(stratified random, response clusters, mixture components, concern slices);
because the choice for probe k depends only on probes 1..k-1, interleaved
rankings stay nested by construction.

The rule is Tijdeman's chairman assignment (R. Tijdeman, "The chairman
assignment problem", Discrete Math. 1980): it keeps |count - share * k| below
1 - 1/(2m - 2) at every prefix for m strata. The plain "largest lag" rule
(share * k - count, biggest first) can drift past 1 with three or more strata.
"""
from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np


def chairman_next(shares: Sequence[float], count: Sequence[int], k: int) -> int:
    """Index of the stratum that gets item k (1-based), given counts of items 1..k-1.

    ``shares`` must be positive and sum to 1. Among strata whose lag
    share * k - count is at least d = 1 / (2m - 2), the one whose lag would
    first exceed 1 - d (earliest deadline); ties go to the lower index.
    """
    m = len(shares)
    if m == 1:
        return 0
    d = 1.0 / (2 * m - 2)
    lag = [shares[j] * k - count[j] for j in range(m)]
    eligible = [j for j in range(m) if lag[j] >= d - 1e-9] or list(range(m))
    return min(eligible, key=lambda j: ((1.0 - d - lag[j]) / shares[j], j))


def apportion(
    orders: dict[Hashable, np.ndarray], shares: dict[Hashable, float], n: int
) -> tuple[np.ndarray, list]:
    """Interleave per-stratum orders into n items whose prefixes track ``shares``.

    Strata are taken in sorted key order (ties go to the first). A stratum that
    runs out hands its share to the others: from then on the rule runs over the
    strata still open, with shares renormalised among them. Returns the items
    and, for each, the key of the stratum it came from.

    The chairman rule is applied to all open strata at once with numpy (the same
    arithmetic as ``chairman_next``), so a column with thousands of values costs
    milliseconds per thousand probes, not a Python loop over strata per probe.
    """
    keys = sorted(orders, key=str)
    sizes = np.array([len(orders[s]) for s in keys], dtype=np.int64)
    weights = np.array([float(shares[s]) for s in keys])
    taken = np.zeros(len(keys), dtype=np.int64)
    total = int(min(n, sizes.sum()))
    out = np.empty(total, dtype=np.int64)
    picked = np.empty(total, dtype=np.int64)
    open_idx = np.flatnonzero(taken < sizes)
    for step in range(total):
        if step == 0 or taken[picked[step - 1]] == sizes[picked[step - 1]]:
            open_idx = np.flatnonzero(taken < sizes)  # the open set changes only on exhaustion
            open_shares = weights[open_idx] / weights[open_idx].sum()
            m = len(open_idx)
            d = 1.0 / (2 * m - 2) if m > 1 else 0.0
        counts = taken[open_idx]
        if m == 1:
            j = 0
        else:
            lag = open_shares * (int(counts.sum()) + 1) - counts
            eligible = lag >= d - 1e-9
            if not eligible.any():
                eligible[:] = True
            deadline = np.where(eligible, (1.0 - d - lag) / open_shares, np.inf)
            j = int(np.argmin(deadline))  # first minimum: ties to the lower index
        best = open_idx[j]
        out[step] = orders[keys[best]][taken[best]]
        picked[step] = best
        taken[best] += 1
    return out, [keys[b] for b in picked]
