"""The simulator's gas injection (GIS) ports and sputter coater, apart from its imaging and milling.

A port inserts, heats (room temperature to 45 °C in ``delays.gis_heat_s``, read against the
monotonic clock), opens and closes, and counts the seconds its valve was open; the sputter coater
runs for the time asked. ``SimulatedMicroscope`` takes these hooks from ``SimulatedGas``, which
relies on the microscope's ``sim`` config, ``_ports``, ``_link`` and ``_trip`` (fault injection).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from napari_fibsem.core.microscope.config import SimulatorConfig
from napari_fibsem.core.microscope.errors import MicroscopeError, NotSupportedError
from napari_fibsem.core.microscope.gas import GasPort, SputterSettings

ROOM_K = 295.15
GIS_SETPOINT_K = 318.15  # 45 °C


@dataclasses.dataclass
class _Port:
    inserted: bool = False
    open: bool = False
    heater_on_at: float | None = None  # time.monotonic() when the heater was switched on
    opened_at: float = 0.0
    deposited_s: float = 0.0  # seconds the valve was open, in total


class SimulatedGas:
    """The gas and sputter hooks of ``SimulatedMicroscope`` (a mixin; the host sets the state)."""

    sim: SimulatorConfig
    _ports: dict[str, _Port]
    _sputtering: bool
    sputtered_s: float

    def _link(self, counts_as: str | None = None) -> None:  # the host's connection check
        raise NotImplementedError

    def _trip(self, kind: str) -> bool:  # the host's fault injection
        raise NotImplementedError

    def deposited(self, port: str) -> float:
        """Seconds the valve of GIS ``port`` has been open, in total."""
        return self._ports[port].deposited_s

    def _port(self, name: str) -> _Port:
        self._link()
        if name not in self._ports:
            raise MicroscopeError(f"the simulator has no GIS port {name!r}; it has {list(self._ports)}")
        return self._ports[name]

    def _gas_port_names(self) -> list[str]:
        self._link()
        return list(self._ports)

    def _read_gas_port(self, port: str) -> GasPort:
        p = self._port(port)
        heat, progress = self.sim.delays.gis_heat_s, 0.0
        if p.heater_on_at is not None:
            progress = 1.0 if heat == 0 else min(1.0, (time.monotonic() - p.heater_on_at) / heat)
        temperature = ROOM_K + progress * (GIS_SETPOINT_K - ROOM_K)
        return GasPort(port, p.inserted, p.open, temperature, ready=progress >= 1.0)

    def _insert_gis(self, port: str, position: str | None) -> None:
        p = self._port(port)
        if position is not None:
            raise NotSupportedError(f"the simulated GIS has one insert position, not {position!r}; use None")
        time.sleep(self.sim.delays.move_s)
        p.inserted = True

    def _retract_gis(self, port: str) -> None:
        p = self._port(port)
        time.sleep(self.sim.delays.move_s)
        p.inserted = False

    def _heat_gis(self, port: str, on: bool) -> None:
        p = self._port(port)
        if not on:
            p.heater_on_at = None
        elif p.heater_on_at is None:
            p.heater_on_at = time.monotonic()

    def _open_gis(self, port: str) -> None:
        p = self._port(port)
        if not p.inserted:
            raise MicroscopeError(f"the GIS of {port!r} is retracted; its valve stays closed")
        if not p.open:
            p.open, p.opened_at = True, time.monotonic()
        if self._trip("gis_open"):
            raise MicroscopeError(f"the {port!r} GIS valve reports a fault while opening (injected fault)")

    def _close_gis(self, port: str) -> None:
        p = self._port(port)
        if self._trip("gis_close"):
            raise MicroscopeError(f"the {port!r} GIS valve did not close (injected fault)")
        if p.open:
            p.open, p.deposited_s = False, p.deposited_s + time.monotonic() - p.opened_at

    def _prepare_sputter(self, settings: SputterSettings) -> None:
        self._link()
        if not self.sim.sputter_coater:
            raise NotSupportedError("this simulated microscope has no sputter coater (simulator.sputter_coater)")

    def _run_sputter(self, settings: SputterSettings, wait: Callable[[float], bool]) -> bool:
        self._link()
        self._sputtering, t0 = True, time.monotonic()
        try:
            return wait(settings.duration)
        finally:
            self._sputtering = False
            self.sputtered_s += time.monotonic() - t0
