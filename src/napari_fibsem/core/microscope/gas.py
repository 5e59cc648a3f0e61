"""Gas injection (GIS) and sputter coating: their settings and readings, and the safe sequences.

``Microscope.run_gas_injection`` and ``Microscope.sputter_coat`` run these sequences as one
logged operation (errors translated, the stage re-read after a failure); the sequences call only
the adapter's hooks (see ``hooks.InstrumentHooks``), so every adapter gets the same safety:

- nothing happens unless the chamber reads *pumped* (read first), and an unknown port is refused
  with the list of the instrument's ports;
- gas injection: insert the GIS (if it is not in), heat it and wait until it is ready (a
  timeout), open the valve for the duration, close it, retract the GIS, switch the heater off;
- once the sequence has started, the valve is closed and the GIS retracted whatever ends it
  (completion, ``stop``, an error, KeyboardInterrupt), each cleanup step tried even if an earlier
  one failed; a cleanup failure is logged and added to the original error, never replaces it;
- sputter coating: prepare, coat for the duration, and always recover (restore the chamber);
- every step is a record of its own in the event log (``gis_insert``, ``gis_heat``,
  ``gis_ready``, ``gis_open``, ``gis_close``, ``gis_retract``, ``gis_heater_off``,
  ``sputter_prepare``, ``sputter_run``, ``sputter_recover``); the closing steps carry ``reason``:
  ``completed``, ``stopped`` or ``error``.

Units: seconds, kelvin (the stage and GIS temperatures; °C = K - 273.15), pascals, amperes, volts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from napari_fibsem.core.microscope.errors import MicroscopeError, NotSupportedError, RefusedError
from napari_fibsem.core.microscope.gas_settings import (
    DepositionProgress,
    DepositionResult,
    GasInjectionSettings,
    GasPort,
    Phase,
    SputterSettings,
)

if TYPE_CHECKING:
    from napari_fibsem.core.microscope.hooks import InstrumentHooks

__all__ = [
    "TICK_S",
    "DepositionProgress",
    "DepositionResult",
    "GasInjectionSettings",
    "GasPort",
    "Phase",
    "SputterSettings",
    "insert",
    "read_ports",
    "require_port",
    "require_pumped",
    "retract",
    "run_gas_injection",
    "sputter_coat",
]

TICK_S = 0.2  # how often a waiting sequence checks ``stop`` and reports progress


# -- checks --------------------------------------------------------------------------------------


def require_pumped(m: InstrumentHooks, what: str) -> None:
    """Refuse ``what`` unless the chamber reads pumped (an instrument that cannot say is refused)."""
    try:
        chamber = m._read_chamber()
    except NotSupportedError as e:
        raise NotSupportedError(f"refused: {what} needs a pumped chamber, but {e}; nothing was done") from e
    if chamber.vacuum != "pumped":
        pressure = f" at {chamber.pressure:.3g} Pa" if chamber.pressure is not None else ""
        raise RefusedError(
            f"refused: {what} needs a pumped chamber; the chamber is {chamber.vacuum}{pressure}; "
            "nothing was done"
        )


def require_port(m: InstrumentHooks, port: str) -> str:
    """``port`` if the instrument has it; otherwise refuse, listing the ports it has."""
    names = [str(n) for n in m._gas_port_names()]
    if port not in names:
        raise RefusedError(
            f"refused: unknown GIS port {port!r}; this instrument has {names}; nothing was done"
        )
    return port


# -- single operations -----------------------------------------------------------------------------


def read_ports(m: InstrumentHooks) -> list[GasPort]:
    return [m._read_gas_port(str(name)) for name in m._gas_port_names()]


def insert(m: InstrumentHooks, port: str, position: str | None = None) -> GasPort:
    require_port(m, port)
    m._insert_gis(port, position)
    return m._read_gas_port(port)


def retract(m: InstrumentHooks, port: str) -> GasPort:
    """Retract ``port``; a valve that does not read closed is closed first."""
    require_port(m, port)
    if m._read_gas_port(port).open is not False:
        m._close_gis(port)
    m._retract_gis(port)
    return m._read_gas_port(port)


# -- sequences -------------------------------------------------------------------------------------


class _Run:
    """Time, ``stop``, progress and step records of one sequence."""

    def __init__(
        self,
        m: InstrumentHooks,
        args: dict[str, Any],
        requested: float,
        on_progress: Callable[[DepositionProgress], None] | None,
        stop: threading.Event | None,
    ) -> None:
        self.m, self.args, self.requested = m, args, requested
        self.on_progress, self.stop = on_progress, stop
        self.t0 = time.monotonic()
        self.deposited = 0.0

    @property
    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def report(self, phase: Phase, message: str = "") -> None:
        if self.on_progress is not None:
            elapsed = time.monotonic() - self.t0
            self.on_progress(DepositionProgress(phase, self.deposited, self.requested, elapsed, message))

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.stop.wait(seconds) if self.stop is not None else time.sleep(seconds)

    def step(self, op: str, fn: Callable[..., Any], *args: Any, **fields: Any) -> Any:
        """Call one hook and record it (ok or its error) in the event log."""
        try:
            out = fn(*args)
        except BaseException as e:
            self.m.events.write(op, self.args, ok=False, error=e, **fields)
            raise
        self.m.events.write(op, self.args, ok=True, **fields)
        return out

    def flow(self, phase: Phase, seconds: float) -> bool:
        """Let ``seconds`` pass (gas flowing / coating), reporting; False if stopped on the way."""
        start = time.monotonic() - self.deposited
        while True:
            self.deposited = min(seconds, time.monotonic() - start)
            if self.deposited >= seconds:
                return True
            if self.stopped:
                return False
            self.report(phase)
            self.sleep(min(TICK_S, seconds - self.deposited))

    def result(self, stopped_in: Phase | None = None) -> DepositionResult:
        return DepositionResult(
            stopped_in is None, self.deposited, self.requested, time.monotonic() - self.t0, stopped_in
        )

    def finish(self, steps: list[tuple[str, Callable[..., Any], tuple]], reason: str) -> tuple[str, bool]:
        """Run every closing step, each even if an earlier one failed: what happened, and whether
        all of them worked."""
        said, ok = [], True
        for op, fn, args in steps:
            try:
                self.step(op, fn, *args, reason=reason)
            except Exception as e:
                said.append(f"{op} failed ({type(e).__name__}: {e})")
                ok = False
            else:
                said.append(f"{op} done")
        return ", ".join(said), ok


def _end(
    run: _Run,
    steps: list[tuple[str, Callable[..., Any], tuple]],
    body: Callable[[], DepositionResult],
    what: str,
) -> DepositionResult:
    """``body``, then the closing ``steps`` whatever happened; after an error, how the cleanup went
    is added to that error (which stays the one raised); a cleanup failure after a clean end is
    raised."""
    try:
        result = body()
    except BaseException as error:
        said, ok = run.finish(steps, "error")
        _add_note(error, f"{what} cleanup: {said}" + ("" if ok else "; check the instrument"))
        raise
    said, ok = run.finish(steps, "completed" if result.completed else "stopped")
    if not ok:
        raise MicroscopeError(f"{what} ended, but its cleanup failed: {said}; check the instrument")
    return result


def _add_note(error: BaseException, note: str) -> None:
    if isinstance(error, MicroscopeError):
        error.args = (f"{error}; {note}",)
    else:  # what add_note() does (Python >= 3.11); Microscope._op puts notes into its message
        error.__notes__ = [*getattr(error, "__notes__", ()), note]


def run_gas_injection(
    m: InstrumentHooks,
    settings: GasInjectionSettings,
    on_progress: Callable[[DepositionProgress], None] | None = None,
    stop: threading.Event | None = None,
) -> DepositionResult:
    """Insert, heat, open for ``settings.duration``, close, retract (see the module docstring)."""
    require_pumped(m, "gas injection")
    name = require_port(m, settings.port)
    port = m._read_gas_port(name)
    if settings.temperature is not None and port.temperature is None:
        raise NotSupportedError(
            f"refused: {type(m).__name__} does not report the temperature of GIS port {name!r}, so it "
            "cannot wait for the requested temperature; leave temperature=None to rely on the "
            "instrument's own readiness; nothing was done"
        )
    run = _Run(m, {"port": name}, settings.duration, on_progress, stop)
    if run.stopped:
        return run.result("insert")
    closing = [("gis_close", m._close_gis, (name,)), ("gis_retract", m._retract_gis, (name,))]
    if settings.heat:
        closing.append(("gis_heater_off", m._heat_gis, (name, False)))

    def body() -> DepositionResult:
        run.report("insert")
        if port.inserted is not True:
            run.step("gis_insert", m._insert_gis, name, settings.insert_position)
        if settings.heat:
            run.step("gis_heat", m._heat_gis, name, True)
            if not _wait_ready(run, name, settings):
                return run.result("heat")
        if run.stopped:
            return run.result("heat")
        run.step("gis_open", m._open_gis, name)
        return run.result(None if run.flow("deposit", settings.duration) else "deposit")

    return _end(run, closing, body, f"gas injection through {name!r}")


def _wait_ready(run: _Run, name: str, settings: GasInjectionSettings) -> bool:
    """Poll the port until it is ready; False if stopped; an error after ``heat_timeout``."""
    start = time.monotonic()
    deadline = start + settings.heat_timeout
    while True:
        port = run.m._read_gas_port(name)
        if settings.temperature is not None:
            ready = port.temperature is not None and port.temperature >= settings.temperature
        else:  # None: the instrument gives no readiness; its _heat_gis has waited for it
            ready = port.ready is not False
        if ready:
            run.m.events.write(
                "gis_ready",
                run.args,
                ok=True,
                temperature=port.temperature,
                waited_s=time.monotonic() - start,
            )
            return True
        if run.stopped:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            temp = f"{port.temperature:.1f} K" if port.temperature is not None else "unknown"
            wanted = f", wanted {settings.temperature:.1f} K" if settings.temperature is not None else ""
            raise MicroscopeError(
                f"GIS port {name!r} was not ready after {settings.heat_timeout:g} s (temperature "
                f"{temp}{wanted}); the valve was not opened"
            )
        reading = f": {port.temperature:.1f} K" if port.temperature is not None else ""
        run.report("heat", f"heating {name}{reading}")
        run.sleep(min(TICK_S, left))


def sputter_coat(
    m: InstrumentHooks,
    settings: SputterSettings,
    on_progress: Callable[[DepositionProgress], None] | None = None,
    stop: threading.Event | None = None,
) -> DepositionResult:
    """Prepare the coater, coat for ``settings.duration``, always recover."""
    require_pumped(m, "sputter coating")
    run = _Run(m, {"settings": settings}, settings.duration, on_progress, stop)
    if run.stopped:
        return run.result("prepare")
    recovering = [("sputter_recover", m._recover_sputter, ())]
    seen: list[bool] = []  # whether the adapter let the time pass through wait()

    def wait(seconds: float) -> bool:
        seen.append(True)
        return run.flow("coat", seconds)

    def body() -> DepositionResult:
        run.report("prepare")
        run.step("sputter_prepare", m._prepare_sputter, settings)
        completed = run.step("sputter_run", m._run_sputter, settings, wait)
        if not seen and completed:  # a blocking instrument call: it coated for the whole time
            run.deposited = settings.duration
        return run.result(None if completed else "coat")

    return _end(run, recovering, body, "sputter coating")
