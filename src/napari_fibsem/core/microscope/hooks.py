"""The raw instrument calls an adapter implements: the only vendor-specific code.

:class:`~napari_fibsem.core.microscope.base.Microscope` calls these after its checks (limits,
confirmation, connection) and logs and recovers around them, so a hook just talks to the
instrument in SI units and raises a ``MicroscopeError`` subclass on failure (translating the
vendor's exceptions). Abstract hooks are required; the others default to "not supported"
(manipulator, milling, chamber, gas injection, sputter coating) or to doing nothing (connect,
autocontrast, stopping milling, recovering after sputtering).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from napari_fibsem.core.microscope.errors import NotSupportedError
from napari_fibsem.core.microscope.gas_settings import GasPort, SputterSettings
from napari_fibsem.core.microscope.structures import (
    BeamSettings,
    BeamType,
    ChamberState,
    ImageSettings,
    ManipulatorPosition,
    MillingSettings,
    Pattern,
    StagePosition,
)

if TYPE_CHECKING:
    from napari_fibsem.core.microscope.events import EventLog


class InstrumentHooks(ABC):
    """What an adapter implements (all units SI; image offsets +x right, +y up)."""

    events: EventLog  # set by ``Microscope``; the sequences in ``gas`` log each step to it

    def _connect(self) -> None:  # noqa: B027 (optional hook)
        """Open the vendor connection."""

    def _disconnect(self) -> None:  # noqa: B027 (optional hook)
        """Close the vendor connection."""

    @abstractmethod
    def _acquire(self, settings: ImageSettings) -> np.ndarray | tuple[np.ndarray, float]:
        """Acquire a (height, width) uint8/uint16 image with ``settings``.

        May return ``(image, pixel_size)`` when the instrument reports its own pixel size (metres),
        which the image metadata then records instead of the requested one.
        """

    def _autocontrast(self, beam: BeamType) -> None:  # noqa: B027 (optional hook)
        """Run the instrument's auto contrast/brightness for ``beam``."""

    @abstractmethod
    def _read_stage_position(self) -> StagePosition: ...

    @abstractmethod
    def _move_stage_absolute(self, position: StagePosition) -> None:
        """Move the stage; the base class has already checked limits and step size."""

    @abstractmethod
    def _read_beam_settings(self, beam: BeamType) -> BeamSettings: ...

    @abstractmethod
    def _apply_beam_settings(self, settings: BeamSettings) -> None: ...

    def _has_manipulator(self) -> bool:
        return False

    def _read_manipulator(self) -> ManipulatorPosition:
        raise NotSupportedError(f"{type(self).__name__} has no manipulator")

    def _insert_manipulator(self) -> None:
        raise NotSupportedError(f"{type(self).__name__} has no manipulator")

    def _retract_manipulator(self) -> None:
        raise NotSupportedError(f"{type(self).__name__} has no manipulator")

    def _move_manipulator_relative(self, dx: float, dy: float, dz: float) -> None:
        raise NotSupportedError(f"{type(self).__name__} has no manipulator")

    def _setup_milling(self, settings: MillingSettings) -> None:
        raise NotSupportedError(f"{type(self).__name__} cannot mill")

    def _start_milling(self, patterns: list[Pattern], settings: MillingSettings) -> int:
        """Start milling; return the number of steps the run will report."""
        raise NotSupportedError(f"{type(self).__name__} cannot mill")

    def _mill_step(self) -> tuple[int, int, int]:
        """Wait for / do the next step; return (steps done, steps total, pattern index)."""
        raise NotSupportedError(f"{type(self).__name__} cannot mill")

    def _stop_milling(self) -> None:  # noqa: B027 (optional hook)
        """Stop milling now (also called after an error)."""

    def _simulated_clock(self) -> float | None:
        """Seconds on a simulated clock that milling advances (simulators); None on an instrument."""
        return None

    def _read_chamber(self) -> ChamberState:
        raise NotSupportedError(f"{type(self).__name__} does not report the chamber state")

    # -- gas injection (GIS); the sequence around these is in ``gas.run_gas_injection`` --------

    def _gas_port_names(self) -> list[str]:
        raise NotSupportedError(f"{type(self).__name__} has no gas injection system (GIS)")

    def _read_gas_port(self, port: str) -> GasPort:
        raise NotSupportedError(f"{type(self).__name__} has no gas injection system (GIS)")

    def _insert_gis(self, port: str, position: str | None) -> None:
        """Move the GIS of ``port`` in (to ``position`` if the instrument names positions)."""
        raise NotSupportedError(f"{type(self).__name__} cannot insert a GIS")

    def _retract_gis(self, port: str) -> None:
        raise NotSupportedError(f"{type(self).__name__} cannot retract a GIS")

    def _heat_gis(self, port: str, on: bool) -> None:
        """Switch the port's heater on or off. An instrument that reports no readiness
        (``GasPort.ready`` None) returns from switching on only once the port is ready."""
        raise NotSupportedError(f"{type(self).__name__} cannot heat a GIS")

    def _open_gis(self, port: str) -> None:
        raise NotSupportedError(f"{type(self).__name__} cannot open a GIS valve")

    def _close_gis(self, port: str) -> None:
        raise NotSupportedError(f"{type(self).__name__} cannot close a GIS valve")

    # -- sputter coating; the sequence around these is in ``gas.sputter_coat`` -----------------

    def _prepare_sputter(self, settings: SputterSettings) -> None:
        """Get the coater ready (chamber gas and pressure, stage position, current)."""
        raise NotSupportedError(f"{type(self).__name__} has no sputter coater")

    def _run_sputter(self, settings: SputterSettings, wait: Callable[[float], bool]) -> bool:
        """Coat for ``settings.duration``; ``wait(seconds)`` lets the time pass (reporting progress)
        and returns False when the run was stopped: end the coating then and return False.
        An instrument call that blocks for the whole time need not call ``wait``. True: done."""
        raise NotSupportedError(f"{type(self).__name__} has no sputter coater")

    def _recover_sputter(self) -> None:  # noqa: B027 (optional hook)
        """Restore what ``_prepare_sputter`` changed; called after every run, also a failed one."""
