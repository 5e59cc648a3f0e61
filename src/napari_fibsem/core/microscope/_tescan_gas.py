"""Gas injection and chamber readings of TESCAN systems through TESCAN Automation; mixed into
:class:`~napari_fibsem.core.microscope.tescan.TescanMicroscope`.

The safe sequences around these hooks (pumped chamber, close and retract whatever happens) are in
``gas``; here are only TESCAN Automation's calls.

Where the names come from. Checked against OpenFIBSEM's TescanMicroscope (DeMarcoLab/fibsem),
which deposits platinum with them on real instruments: ``GIS.Enum()`` (lines with ``.name``),
``GIS.MoveTo(line, Automation.GIS.Position.Working)`` to insert and ``Position.Home`` to retract,
``GIS.PrepareTemperature(line, True/False)``, ``GIS.WaitForTemperatureReady(line)``,
``GIS.OpenValve(line)``, ``GIS.CloseValve(line)``, ``Chamber.GetStatus()`` and
``Chamber.GetPressure(0)``. Assumed, not verified: the pressure unit (Pa, as SharkSEM reports
it), the status codes (SharkSEM's: 0 vacuum ready, 1 pumping, 2 venting, 3 vacuum off, 4 chamber
open; a status the adapter does not know reads "unknown", which refuses gas injection), and
whether ``WaitForTemperatureReady`` has a time limit (``GasInjectionSettings.heat_timeout`` cannot
apply to it). TESCAN Automation reports neither the GIS position, its valve, nor its temperature
here: the adapter reports what it last commanded (None before), and a requested GIS temperature is
refused. Sputter coating is not supported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_fibsem.core.microscope._vendor import VendorMicroscope
from napari_fibsem.core.microscope.config import MicroscopeConfig
from napari_fibsem.core.microscope.errors import MicroscopeError, NotSupportedError
from napari_fibsem.core.microscope.events import EventLog
from napari_fibsem.core.microscope.gas import GasPort, SputterSettings
from napari_fibsem.core.microscope.structures import ChamberState

_STATUS = {0: "pumped", 1: "pumping", 2: "venting", 3: "vented", 4: "vented"}  # SharkSEM VacGetStatus
_PRESSURE_GAUGE = 0  # the chamber gauge


def _vacuum(status: Any) -> tuple[str, str]:
    """(our vacuum state, the instrument's words) of a ``Chamber.GetStatus()`` value."""
    name = getattr(status, "name", None)
    value = getattr(status, "value", status)
    raw = str(name if name is not None else status)
    if isinstance(value, int) and not isinstance(value, bool):
        return _STATUS.get(value, "unknown"), raw
    return "unknown", raw


class AutomationGas(VendorMicroscope):
    """GIS lines and vacuum readings over TESCAN Automation."""

    def __init__(
        self, config: MicroscopeConfig | None = None, *, event_log: EventLog | str | Path | None = None
    ) -> None:
        super().__init__(config, event_log=event_log)
        self._gis_state: dict[str, dict[str, bool | None]] = {}  # port -> as last commanded

    # -- chamber -------------------------------------------------------------------------------

    def _read_chamber(self) -> ChamberState:
        chamber = self._api().Chamber
        with self._calling("read the chamber vacuum"):
            status = chamber.GetStatus()
            pressure = float(chamber.GetPressure(_PRESSURE_GAUGE))
        vacuum, raw = _vacuum(status)
        return ChamberState(vacuum, pressure, None, raw=raw)

    # -- GIS -----------------------------------------------------------------------------------

    def _lines(self) -> list:
        gis = self._api().GIS
        with self._calling("list the GIS"):
            return list(gis.Enum())

    def _line(self, port: str):
        for line in self._lines():
            if str(line.name) == port:
                return line
        raise MicroscopeError(f"TESCAN Automation reports no GIS {port!r}")

    def _position(self, name: str | None):
        positions = self._sdk.automation.Automation.GIS.Position
        if name is None:
            return positions.Working
        try:
            return getattr(positions, name)
        except AttributeError:
            known = [p.name for p in positions] if isinstance(positions, type) else []
            raise NotSupportedError(f"the TESCAN GIS has no position {name!r}; it has {known}") from None

    def _known(self, port: str) -> dict[str, bool | None]:
        return self._gis_state.setdefault(port, {"inserted": None, "open": None, "ready": None})

    def _gis_call(self, what: str, port: str, method: str, *args: Any) -> None:
        line, gis = self._line(port), self._api().GIS
        with self._calling(f"{what} GIS {port!r}"):
            getattr(gis, method)(line, *args)

    def _gas_port_names(self) -> list[str]:
        return [str(line.name) for line in self._lines()]

    def _read_gas_port(self, port: str) -> GasPort:
        self._line(port)
        known = self._known(port)
        return GasPort(port, known["inserted"], known["open"], None, known["ready"])

    def _insert_gis(self, port: str, position: str | None) -> None:
        target, known = self._position(position), self._known(port)
        known["inserted"] = None  # moving
        self._gis_call("insert", port, "MoveTo", target)
        known["inserted"] = True

    def _retract_gis(self, port: str) -> None:
        home, known = self._position("Home"), self._known(port)
        known["inserted"] = None
        self._gis_call("retract", port, "MoveTo", home)
        known["inserted"] = False

    def _heat_gis(self, port: str, on: bool) -> None:
        """Switching on waits (``WaitForTemperatureReady``) until the GIS is at temperature."""
        known = self._known(port)
        known["ready"] = None if on else False
        self._gis_call("heat" if on else "stop heating", port, "PrepareTemperature", on)
        if on:
            self._gis_call("wait for the temperature of", port, "WaitForTemperatureReady")
            known["ready"] = True

    def _open_gis(self, port: str) -> None:
        self._known(port)["open"] = True  # until a close succeeds, it may be open
        self._gis_call("open the valve of", port, "OpenValve")

    def _close_gis(self, port: str) -> None:
        self._gis_call("close the valve of", port, "CloseValve")
        self._known(port)["open"] = False

    # -- sputter coater --------------------------------------------------------------------------

    def _prepare_sputter(self, settings: SputterSettings) -> None:
        raise NotSupportedError(
            "the Tescan adapter does not drive a sputter coater (no TESCAN Automation calls for one "
            "are known here); coat in the TESCAN software, or deposit through a GIS with "
            "run_gas_injection"
        )
