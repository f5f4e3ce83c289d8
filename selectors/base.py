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

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar


class Selector(ABC):
    """Base class: parameter handling and the ``select`` signature."""

    #: Registry name of the strategy (e.g. "random", "cluster").
    name: ClassVar[str] = ""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters as stored (what provenance records)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "Selector":
        """Set constructor parameters; unknown names are refused."""
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"Invalid parameter {key!r} for {type(self).__name__}. "
                    f"Valid parameters: {', '.join(valid) or '(none)'}."
                )
            setattr(self, key, value)
        return self

    @abstractmethod
    def select(self, pool: Any, n: int, seed: int = 0) -> Any:
        """Return a ProbeSet of ``n`` probes from ``pool``, ranked (nested prefixes)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
