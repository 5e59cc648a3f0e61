"""Gas injection, sputter coater and chamber readings of ThermoFisher systems through AutoScript;
mixed into :class:`~napari_fibsem.core.microscope.thermofisher.ThermoFisherMicroscope`.

The safe sequences around these hooks (pumped chamber, close and retract whatever happens) are in
``gas``; here are only AutoScript's calls. Units pass through: AutoScript reports the chamber
pressure in pascals and, as assumed here, GIS temperatures in kelvin.

Where the names come from. Checked against AutoScript's own published test scripts (the GIS,
gas and vacuum tests of ``autoscript_sdb_microscope_client_tests``): ``gas.list_all_gis_ports()``,
``gas.get_gis_port(name)`` and the port's ``insert()``, ``retract()``, ``open()``, ``close()``,
``turn_heater_on()``, ``turn_heater_off()``, ``get_temperature()``, ``state`` against
``enumerations.RetractableDeviceState.INSERTED``; ``vacuum.chamber_state`` (``"Pumped"``,
``"Vented"``, ...) and ``vacuum.chamber_pressure.value`` (Pa). Only from OpenFIBSEM (fibsem-os),
not in AutoScript's tests: ``specimen.sputter_coater`` with ``prepare()``, ``run(seconds)``,
``recover()`` and ``current.value`` (A). Assumed, not verified: that ``get_temperature()`` is in
kelvin (OpenFIBSEM reads it so), ``insert(position)`` on a GIS port (AutoScript's tests pass a
position to the MultiChem only), the spelling of the chamber states other than "Pumped".
AutoScript reports no valve state: the adapter reports what it last commanded (None before).
Not covered: the MultiChem (``gas.get_multichem()``) and the Arctis sputter coater, whose ``run``
needs no ``prepare``/``recover``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from napari_fibsem.core.microscope._vendor import VendorMicroscope
from napari_fibsem.core.microscope.config import MicroscopeConfig
from napari_fibsem.core.microscope.errors import NotSupportedError
from napari_fibsem.core.microscope.events import EventLog
from napari_fibsem.core.microscope.gas import GasPort, SputterSettings
from napari_fibsem.core.microscope.structures import ChamberState

_VACUUM = {"pumped": "pumped", "pumping": "pumping", "venting": "venting", "vented": "vented"}


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


class AutoScriptGas(VendorMicroscope):
    """GIS ports, sputter coater and vacuum readings over AutoScript."""

    def __init__(
        self, config: MicroscopeConfig | None = None, *, event_log: EventLog | str | Path | None = None
    ) -> None:
        super().__init__(config, event_log=event_log)
        self._valves: dict[str, bool] = {}  # port -> open, as last commanded

    # -- chamber -------------------------------------------------------------------------------

    def _read_chamber(self) -> ChamberState:
        vacuum = self._api().vacuum
        with self._calling("read the chamber vacuum"):
            raw = str(vacuum.chamber_state)
            pressure = _finite(vacuum.chamber_pressure.value)
        return ChamberState(_VACUUM.get(raw.strip().lower(), "unknown"), pressure, None, raw=raw)

    # -- GIS -----------------------------------------------------------------------------------

    def _gis(self, port: str):
        client = self._api()
        with self._calling(f"get GIS port {port!r}"):
            return client.gas.get_gis_port(port)

    def _gas_port_names(self) -> list[str]:
        client = self._api()
        with self._calling("list the GIS ports"):
            return [str(name) for name in client.gas.list_all_gis_ports()]

    def _read_gas_port(self, port: str) -> GasPort:
        gis, inserted = self._gis(port), self._sdk.enums.RetractableDeviceState.INSERTED
        with self._calling(f"read GIS port {port!r}"):
            state = getattr(gis, "state", None)  # not every retractable device reports one
            temperature = _finite(gis.get_temperature())
        return GasPort(
            port, None if state is None else state == inserted, self._valves.get(port), temperature
        )

    def _insert_gis(self, port: str, position: str | None) -> None:
        gis = self._gis(port)
        with self._calling(f"insert GIS port {port!r}"):
            gis.insert() if position is None else gis.insert(position)

    def _retract_gis(self, port: str) -> None:
        gis = self._gis(port)
        with self._calling(f"retract GIS port {port!r}"):
            gis.retract()

    def _heat_gis(self, port: str, on: bool) -> None:
        gis = self._gis(port)
        with self._calling(f"switch the heater of GIS port {port!r} {'on' if on else 'off'}"):
            gis.turn_heater_on() if on else gis.turn_heater_off()

    def _open_gis(self, port: str) -> None:
        gis = self._gis(port)
        self._valves[port] = True  # until a close succeeds, it may be open
        with self._calling(f"open the valve of GIS port {port!r}"):
            gis.open()

    def _close_gis(self, port: str) -> None:
        gis = self._gis(port)
        with self._calling(f"close the valve of GIS port {port!r}"):
            gis.close()
        self._valves[port] = False

    # -- sputter coater --------------------------------------------------------------------------

    def _coater(self):
        coater = getattr(self._api().specimen, "sputter_coater", None)
        if coater is None:
            raise NotSupportedError("this ThermoFisher system reports no sputter coater")
        return coater

    def _prepare_sputter(self, settings: SputterSettings) -> None:
        """AutoScript's ``prepare()`` moves the stage to the coating position and sets the chamber
        up for sputtering itself (the instrument's own position: no stage limits apply)."""
        fixed = [name for name in ("voltage", "target") if getattr(settings, name) is not None]
        if fixed:
            raise NotSupportedError(
                f"the ThermoFisher adapter cannot set the sputter {' or '.join(fixed)}; leave it None "
                "(the coater runs as set up on the instrument); nothing was done"
            )
        coater = self._coater()
        with self._calling("prepare the sputter coater"):
            coater.prepare()
            if settings.current is not None:
                coater.current.value = settings.current

    def _run_sputter(self, settings: SputterSettings, wait: Callable[[float], bool]) -> bool:
        """``run(seconds)`` blocks for the whole time: a stop is seen only after it."""
        coater = self._coater()
        with self._calling("sputter coating"):
            coater.run(settings.duration)
        return True

    def _recover_sputter(self) -> None:
        coater = self._coater()
        with self._calling("recover after sputter coating"):
            coater.recover()
