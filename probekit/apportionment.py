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
    """
    keys = sorted(orders, key=str)
    taken = {s: 0 for s in keys}
    out: list = []
    labels: list = []
    while len(out) < n:
        open_ = [s for s in keys if taken[s] < len(orders[s])]
        if not open_:
            break
        total = sum(shares[s] for s in open_)
        open_shares = [shares[s] / total for s in open_]
        counts = [taken[s] for s in open_]
        best = open_[chairman_next(open_shares, counts, sum(counts) + 1)]
        out.append(orders[best][taken[best]])
        labels.append(best)
        taken[best] += 1
    return np.asarray(out, dtype=np.int64), labels
