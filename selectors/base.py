"""The selector contract (importable as ``probekit.selectors.base``).

A selector turns a candidate pool into a ranked probe set:
``select(pool, n, seed) -> ProbeSet``. The contract, shared by every strategy
(DESIGN.md §3, STYLE.md):

- the constructor only stores its keyword arguments (scikit-learn style), so
  ``get_params`` / ``set_params`` and construction behave the same and
  validation happens in ``select``;
- the result is a *ranking*: the first m probes of a selection of n are the
  selection of m (nested probe sets, like a basis-set family);
- a selector sees only what exists at selection time (the pool, its metadata,
  a checkpoint's embeddings or gradients), never future losses.

Strategies live one per module in this package; the registry and the common
conformance suite come with the selectors themselves.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from probekit.params import ParamsMixin


class Selector(ParamsMixin, ABC):
    """Base class: parameter handling (``ParamsMixin``) and the ``select`` signature."""

    #: Registry name of the strategy (e.g. "random", "cluster").
    name: ClassVar[str] = ""

    @abstractmethod
    def select(self, pool: Any, n: int, seed: int = 0) -> Any:
        """Return a ProbeSet of ``n`` probes from ``pool``, ranked (nested prefixes)."""
