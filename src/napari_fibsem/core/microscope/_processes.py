"""Milling, gas injection and sputter coating: the long-running ``Microscope`` operations.

A mixin of :class:`~napari_fibsem.core.microscope.base.Microscope`; each method runs through the
guarded wrapper (``_guarded.GuardedInstrument._op``). Milling is stepped here so ``stop`` and
progress work on every adapter; the gas and sputter sequences are in ``gas``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from napari_fibsem.core.microscope import gas
from napari_fibsem.core.microscope._guarded import GuardedInstrument
from napari_fibsem.core.microscope.errors import MicroscopeError
from napari_fibsem.core.microscope.gas_settings import (
    DepositionProgress,
    DepositionResult,
    GasInjectionSettings,
    GasPort,
    SputterSettings,
)
from napari_fibsem.core.microscope.structures import MillingProgress, MillingResult, MillingSettings, Pattern


class ProcessOperations(GuardedInstrument):
    """Milling (stepped, stoppable), GIS deposition and sputter coating, each one logged operation."""

    _milling: MillingSettings

    # -- milling -------------------------------------------------------------------------------

    def setup_milling(self, settings: MillingSettings) -> None:
        """Set the ion beam up for milling (current, voltage, field width)."""

        def run() -> None:
            self._setup_milling(settings)
            self._milling = settings

        self._op("setup_milling", {"settings": settings}, run)

    def estimate_milling_time(
        self, patterns: Sequence[Pattern], settings: MillingSettings | None = None
    ) -> float:
        """Seconds to mill ``patterns``: their volume over current x sputter rate."""
        s = settings or self._milling
        return sum(p.area * p.depth for p in patterns) / (s.current * s.rate)

    def run_milling(
        self,
        patterns: Sequence[Pattern],
        on_progress: Callable[[MillingProgress], None] | None = None,
        stop: threading.Event | None = None,
    ) -> MillingResult:
        """Mill ``patterns`` (ion-image metres) with the settings from ``setup_milling``.

        ``stop`` is checked between steps; a stopped run returns ``completed=False`` with what was
        milled so far. An error (or an exception from ``on_progress``) stops the instrument first.
        """
        patterns = list(patterns)

        def run() -> MillingResult:
            t0, c0 = time.monotonic(), self._simulated_clock()

            def simulated() -> float | None:  # a simulator's duration so far, next to the real one
                return None if c0 is None else self._simulated_clock() - c0

            estimate = self.estimate_milling_time(patterns)
            total = self._start_milling(patterns, self._milling)
            done = 0
            try:
                while done < total:
                    if stop is not None and stop.is_set():
                        self._stop_milling()
                        return MillingResult(False, done, total, time.monotonic() - t0, simulated())
                    done, total, index = self._mill_step()
                    if on_progress is not None:
                        remaining = estimate * (1 - done / total) if total else 0.0
                        elapsed, sim = time.monotonic() - t0, simulated()
                        on_progress(MillingProgress(done, total, index, elapsed, remaining, simulated_s=sim))
            except BaseException as e:
                self._stop_after(e)
                raise
            return MillingResult(True, done, total, time.monotonic() - t0, simulated())

        return self._op("run_milling", {"patterns": patterns, "settings": self._milling}, run)

    def _stop_after(self, error: BaseException) -> None:
        """Stop milling after ``error``. Should stopping fail too, ``error`` stays the one raised and
        carries the stop failure (in its message, or as a note) and the event log records it."""
        try:
            self._stop_milling()
        except Exception as stop_error:
            note = (
                f"stopping the milling failed as well ({type(stop_error).__name__}: {stop_error}); "
                "the ion beam may still be milling: check the instrument"
            )
            self.events.write("stop_milling", {}, ok=False, error=stop_error)
            if isinstance(error, MicroscopeError):
                error.args = (f"{error}; {note}",)
            else:  # what add_note() does (Python >= 3.11); _op puts notes into its message
                error.__notes__ = [*getattr(error, "__notes__", ()), note]

    # -- gas injection, sputter coating (the sequences are in ``gas``) ------------------------

    def gas_ports(self) -> list[GasPort]:
        """Every GIS port: name, inserted, valve open, temperature (K), ready."""
        return self._op("gas_ports", {}, lambda: gas.read_ports(self))

    def insert_gis(self, port: str, position: str | None = None) -> GasPort:
        return self._op(
            "insert_gis", {"port": port, "position": position}, lambda: gas.insert(self, port, position)
        )

    def retract_gis(self, port: str) -> GasPort:
        """Retract the GIS of ``port``; its valve is closed first unless it reads closed."""
        return self._op("retract_gis", {"port": port}, lambda: gas.retract(self, port))

    def run_gas_injection(
        self,
        settings: GasInjectionSettings,
        *,
        on_progress: Callable[[DepositionProgress], None] | None = None,
        stop: threading.Event | None = None,
    ) -> DepositionResult:
        """Deposit through a GIS port: insert, heat until ready, open for ``settings.duration``,
        close, retract. Refused unless the chamber is pumped. Whatever ends it (``stop``, an
        error), the valve is closed and the GIS retracted; see ``gas`` for the details."""
        return self._op(
            "run_gas_injection",
            {"settings": settings},
            lambda: gas.run_gas_injection(self, settings, on_progress, stop),
        )

    def sputter_coat(
        self,
        settings: SputterSettings,
        *,
        on_progress: Callable[[DepositionProgress], None] | None = None,
        stop: threading.Event | None = None,
    ) -> DepositionResult:
        """Sputter-coat for ``settings.duration``; refused unless the chamber is pumped; the coater
        always recovers (restores the chamber) afterwards."""
        return self._op(
            "sputter_coat",
            {"settings": settings},
            lambda: gas.sputter_coat(self, settings, on_progress, stop),
        )
