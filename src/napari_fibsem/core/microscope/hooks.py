"""The raw instrument calls an adapter implements: the only vendor-specific code.

:class:`~napari_fibsem.core.microscope.base.Microscope` calls these after its checks (limits,
confirmation, connection) and logs and recovers around them, so a hook just talks to the
instrument in SI units and raises a ``MicroscopeError`` subclass on failure (translating the
vendor's exceptions). Abstract hooks are required; the others default to "not supported"
(manipulator, milling, chamber) or to doing nothing (connect, autocontrast).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from napari_fibsem.core.microscope.errors import NotSupportedError
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


class InstrumentHooks(ABC):
    """What an adapter implements (all units SI; image offsets +x right, +y up)."""

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

    def _read_chamber(self) -> ChamberState:
        raise NotSupportedError(f"{type(self).__name__} does not report the chamber state")
