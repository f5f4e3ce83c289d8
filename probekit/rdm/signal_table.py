"""The 2RDM signals, each declared once: what ``analyze``, the Monitor and the bench watch.

A signal is one number per window of the dynamical 2RDM, computed from the
window's spectral statistics (:class:`probekit.rdm.spectral.SpectralBatch`), that
**rises** towards a transition, so that one family of alarm rules (which fire on
rises) serves them all. A :class:`Signal` declares its name, how it is computed,
a one-line doc and whether a log axis suits it. Signals are found through the
registry :data:`probekit.registry.SIGNALS` (entry-point group ``probekit.signals``,
built-ins included), and every user reads them from there:
``probekit analyze --signal NAME`` (its help lists the table),
``Monitor(..., signal=NAME)`` and the bench's ``SignalSpec(statistic=NAME)``.
A new signal is one declaration plus one entry point::

    # my_package/signals.py
    TOP2_SHARE = Signal("top2_share", lambda s: s.spectrum[:, :2].sum(axis=1) / s.trace,
                        "the two leading eigenvalues' share of the trace", log_axis=False)

    [project.entry-points."probekit.signals"]
    top2_share = "my_package.signals:TOP2_SHARE"

or, at run time, ``register_signal(TOP2_SHARE)``. ``compute`` gets a batch of B
windows (``shc``, ``pr``, ``trace``, ``frobenius_sq`` [B], ``spectrum`` [B, r] with
every eigenvalue that can be non-zero, and the derived ``log_shc``,
``inverse_pr``, ``leading_share``, ``spectral_entropy``, each defined once in
:mod:`probekit.rdm.spectral`) and returns [B] values, NaN where it is undefined.

This module stays light (``probekit analyze --help`` reads it): numpy is
imported when a signal is computed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from probekit.errors import ProbekitError, ProbekitUsageError
from probekit.registry import SIGNALS

__all__ = ["Signal", "get_signal", "register_signal", "signal_names", "unregister_signal"]


@dataclass(frozen=True)
class Signal:
    """One 2RDM signal: everything analyze, the Monitor and the bench need to know."""

    name: str  # --signal NAME, a CSV column: letters, digits and '_'
    compute: Callable[[Any], Any]  # SpectralBatch of B windows -> [B] values (NaN where undefined)
    doc: str  # one line: what it is (analyze --help lists it)
    log_axis: bool = True  # positive and spanning decades; False for a bounded share or ratio
    label: str = ""  # its name in figures ("SHC"); default: the name

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and self.name.isidentifier() and not self.name.startswith("_")):
            raise ProbekitUsageError(
                f"A signal name must be letters, digits and '_' (not first). Got {self.name!r} instead."
            )
        if not callable(self.compute):
            raise ProbekitUsageError(f"The compute of signal {self.name!r} must be callable. Got {self.compute!r} instead.")
        if not (isinstance(self.doc, str) and self.doc.strip() and "\n" not in self.doc):
            raise ProbekitUsageError(f"The doc of signal {self.name!r} must be one non-empty line. Got {self.doc!r} instead.")
        if not isinstance(self.log_axis, bool):
            raise ProbekitUsageError(f"The log_axis of signal {self.name!r} must be a bool. Got {self.log_axis!r} instead.")
        object.__setattr__(self, "__doc__", self.doc)  # what the registry's describe() reads

    @property
    def title(self) -> str:
        """The name figures show."""
        return self.label or self.name

    def values(self, series: Any) -> Any:
        """The signal over an ``RDMSeries``: [T] float64, NaN where the window is not full."""
        import numpy as np

        out = self._compute(series, len(series))
        out[~np.asarray(series.ready)] = np.nan
        return out

    def value(self, stats: Any) -> float:
        """The signal of one window (an ``RDMStats``)."""
        return float(self._compute(stats, 1)[0])

    def _compute(self, stats: Any, size: int) -> Any:
        import numpy as np

        from probekit.rdm.spectral import SpectralBatch

        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # undefined is NaN, not a warning
            out = self.compute(SpectralBatch.of(stats))
        out = np.array(out, dtype=np.float64)  # a copy: never a view of the statistics
        if out.shape != (size,):
            raise ProbekitError(
                f"the signal {self.name!r} must give one value per window, shape ({size},). Got shape {out.shape}."
            )
        return out


# -- the registry -----------------------------------------------------------------------
def signal_names() -> list[str]:
    """Registered signals: the built-ins in their own order, then the others by name."""
    return SIGNALS.ordered_names()


def get_signal(name: str) -> Signal:
    """The declaration registered as ``name`` (unknown names: did-you-mean and the list)."""
    return SIGNALS.declaration(name, Signal)


def register_signal(signal: Signal) -> None:
    """Add a signal at run time (tests, notebooks); a name already registered is refused."""
    SIGNALS.register_declaration(signal, Signal)


def unregister_signal(name: str) -> None:
    SIGNALS.unregister(name)


# -- the built-ins ----------------------------------------------------------------------
SHC = Signal("shc", lambda s: s.shc, "spectral heat capacity, Var(eigenvalues of C)", label="SHC")
INV_PR = Signal("inv_pr", lambda s: s.inverse_pr, "1 / participation ratio, in [1/rank, 1]: one direction "
                "dominating the window", log_axis=False, label="1 / PR")
LEADING_SHARE = Signal("leading_share", lambda s: s.leading_share, "the leading eigenvalue's share of the "
                       "trace, in (0, 1]", log_axis=False, label="leading share")
TRACE = Signal("trace", lambda s: s.trace, "tr C, the window's total variance")
LAMBDA_1 = Signal("lambda_1", lambda s: s.spectrum[:, 0], "the leading eigenvalue of C")
