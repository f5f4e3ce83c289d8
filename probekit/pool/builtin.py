"""Pools that need no download: one bundled with scikit-learn, one generated here.

``digits``  scikit-learn's bundled 8x8 handwritten digits (1797 images): a
            ``pixels`` column (64 values in 0..16) and a ``label``. The default
            pool of ``probekit select``.
``toy-text`` a generated text-classification pool (2000 sentences) built to
            exercise concern-targeted selection: a ``topic`` (eight common
            topics and one rare one, ~2%), a binary sentiment ``label``, a
            protected attribute ``group`` (A/B, carried only by the person
            named in the sentence), and counterfactual pairs (``pair_id``):
            every sentence exists once per group, identical otherwise.

Both are deterministic: the same call gives the same pool and fingerprint.
"""
from __future__ import annotations

import numpy as np

from probekit.errors import ProbekitUsageError

BUILTIN_POOLS = ("digits", "toy-text")

_TOPICS = {
    "sports": (["match", "team", "coach", "league", "goal"], ["played", "trained", "won", "lost"]),
    "finance": (["market", "budget", "loan", "stock", "bank"], ["invested", "saved", "traded", "spent"]),
    "weather": (["storm", "forecast", "rain", "heatwave", "wind"], ["watched", "tracked", "expected", "feared"]),
    "health": (["clinic", "diet", "doctor", "sleep", "vaccine"], ["visited", "tried", "changed", "reviewed"]),
    "travel": (["flight", "hotel", "train", "museum", "beach"], ["booked", "toured", "visited", "planned"]),
    "food": (["recipe", "restaurant", "bread", "soup", "market stall"], ["cooked", "tasted", "ordered", "baked"]),
    "science": (["experiment", "telescope", "lab", "dataset", "theory"], ["tested", "measured", "studied", "ran"]),
    "music": (["concert", "album", "guitar", "choir", "song"], ["heard", "recorded", "played", "wrote"]),
}
_RARE_TOPIC = ("astronomy", (["comet", "eclipse", "nebula", "meteor shower"], ["observed", "photographed", "charted"]))
_NAMES = {"A": ["Amara", "Aiko", "Anouk", "Adele", "Aziz"], "B": ["Bruno", "Bela", "Bjorn", "Basil", "Bodhi"]}
_SENTIMENT = {1: ["wonderful", "excellent", "delightful", "great"], 0: ["awful", "terrible", "dreadful", "poor"]}


def load_builtin(name: str):
    """A built-in Pool by name (see ``BUILTIN_POOLS``)."""
    if name == "digits":
        return digits_pool()
    if name == "toy-text":
        return toy_text_pool()
    import difflib

    close = difflib.get_close_matches(str(name), BUILTIN_POOLS, n=1)
    hint = f" Did you mean: {close[0]}?" if close else ""
    raise ProbekitUsageError(f"Unknown built-in pool {name!r}.{hint} Available: {', '.join(BUILTIN_POOLS)}.")


def digits_pool():
    from sklearn.datasets import load_digits

    from probekit.pool.core import Pool

    data = load_digits()
    n = len(data.target)
    pool = Pool.from_dict(
        {
            "id": [f"digits-{i:04d}" for i in range(n)],
            "pixels": data.data.astype(np.float32).tolist(),
            "label": data.target.astype(np.int64).tolist(),
        },
        id_field="id",
    )
    pool.name = "builtin:digits"
    return pool


def toy_text_rows(size: int = 2000, seed: int = 0) -> dict[str, list]:
    """Columns of the toy-text pool: ``size`` sentences in ``size // 2`` counterfactual pairs."""
    rng = np.random.default_rng(seed)
    topics = list(_TOPICS.items())
    cols: dict[str, list] = {k: [] for k in ("id", "text", "topic", "label", "group", "pair_id", "slice")}
    for pair in range(size // 2):
        rare = rng.random() < 0.02
        topic, (nouns, verbs) = _RARE_TOPIC if rare else topics[rng.integers(len(topics))]
        label = int(rng.integers(2))
        noun, verb = nouns[rng.integers(len(nouns))], verbs[rng.integers(len(verbs))]
        adjective = _SENTIMENT[label][rng.integers(4)]
        name_slot = int(rng.integers(5))
        for group in ("A", "B"):
            person = _NAMES[group][name_slot]
            cols["id"].append(f"toy-{pair:05d}{group.lower()}")
            cols["text"].append(f"{person} {verb} the {noun} and found it {adjective}.")
            cols["topic"].append(topic)
            cols["label"].append(label)
            cols["group"].append(group)
            cols["pair_id"].append(f"pair-{pair:05d}")
            cols["slice"].append("rare" if rare else "common")
    return cols


def toy_text_pool(size: int = 2000, seed: int = 0):
    from probekit.pool.core import Pool

    pool = Pool.from_dict(toy_text_rows(size, seed), id_field="id")
    if (size, seed) == (2000, 0):
        pool.name = "builtin:toy-text"
    return pool
