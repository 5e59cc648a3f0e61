"""The ``Microscope`` interface: safety, logging and state handling shared by every adapter.

An adapter (simulator, ThermoFisher, Tescan) implements only the raw instrument calls, the
underscored hooks of ``hooks.InstrumentHooks`` (``_acquire``, ``_read_stage_position``,
``_move_stage_absolute``, ...). The public methods here wrap every call so that, for all
adapters alike:

- a stage move outside the configured limits is refused before anything moves (``LimitError``);
- a translation larger than ``max_step_m`` needs ``confirm=True`` (``ConfirmationRequired``);
- a failed call re-reads the stage, so the adapter is never in an unknown state; if even that
  fails the connection is marked lost and every call refuses until ``reconnect()``;
- gas injection and sputter coating run only in a pumped chamber, and whatever ends them the GIS
  valve is closed and the GIS retracted (``gas``);
- every operation is written to the event log (JSON lines) with its arguments and outcome;
- one operation runs at a time (a re-entrant lock), so a widget thread and a script cannot
  interleave stage moves.

Image-plane offsets are metres from the image centre, +x right, +y up (see ``geometry``).
The checks and the wrapper live in ``_guarded``, milling, gas injection and sputter coating in
``_processes`` (mixins this class inherits); this module holds connection, imaging, beams, stage,
manipulator and state.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from pathlib import Path

import numpy as np

from napari_fibsem.core.io.imageio import FibsemImage, ImageMetadata, write_image
from napari_fibsem.core.microscope import geometry
from napari_fibsem.core.microscope._processes import ProcessOperations
from napari_fibsem.core.microscope.config import MicroscopeConfig
from napari_fibsem.core.microscope.errors import AcquisitionError, ConfirmationRequired, MicroscopeError
from napari_fibsem.core.microscope.events import EventLog
from napari_fibsem.core.microscope.structures import (
    BeamSettings,
    BeamType,
    ChamberState,
    ImageSettings,
    ManipulatorPosition,
    MicroscopeState,
    MillingSettings,
    StagePosition,
    now_iso,
    to_dict,
)

_PIXEL_SIZE_TOLERANCE = 0.01  # relative: a reported pixel size further off is logged as a warning


class Microscope(ProcessOperations):
    """A FIB-SEM: acquire, move, mill; state per instance (two microscopes share nothing)."""

    def __init__(
        self, config: MicroscopeConfig | None = None, *, event_log: EventLog | str | Path | None = None
    ) -> None:
        self.config = config or MicroscopeConfig()
        if not isinstance(event_log, EventLog):
            event_log = EventLog(event_log if event_log is not None else self.config.event_log)
        self.events = event_log
        self.connected = False
        self.state_known = False
        self._lock = threading.RLock()
        self._last_images: dict[BeamType, FibsemImage] = {}
        self._milling = MillingSettings()

    # -- connection ----------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the connection and read the state."""
        self._op(
            "connect",
            {"manufacturer": self.config.manufacturer, "ip_address": self.config.ip_address},
            self._open,
            needs_connection=False,
        )

    def reconnect(self) -> None:
        """Re-open a lost connection and re-read the state."""
        self._op("reconnect", {}, self._open, needs_connection=False)

    def disconnect(self) -> None:
        self._op("disconnect", {}, self._close, needs_connection=False, recover=False)

    def _open(self) -> StagePosition:
        self._connect()
        self.connected = True
        pos = self._read_stage_position()
        self.state_known = True
        return pos

    def _close(self) -> None:
        self._disconnect()
        self.connected = False

    # -- imaging -------------------------------------------------------------------------------

    def acquire_image(self, settings: ImageSettings | None = None) -> FibsemImage:
        """Acquire one image; its metadata holds pixel size, beam, time, state and system info.

        The pixel size is the one the instrument reports when its adapter's ``_acquire`` returns
        ``(image, pixel_size)``; otherwise (and when that is None) the requested one.
        """

        def run() -> FibsemImage:
            nonlocal settings
            if settings is None:  # the electron beam as it is set now
                b = self._read_beam_settings(BeamType.ELECTRON)
                settings = ImageSettings(b.resolution, b.dwell_time, b.hfw, BeamType.ELECTRON)
            if settings.autocontrast:
                self._autocontrast(settings.beam)
            out = self._acquire(settings)
            data, reported = out if isinstance(out, tuple) else (out, None)
            data = np.asarray(data)
            w, h = settings.resolution
            if data.shape != (h, w) or data.dtype not in (np.uint8, np.uint16):
                raise AcquisitionError(
                    f"the instrument returned {data.dtype} {data.shape}, expected uint8/uint16 ({h}, {w})"
                )
            meta = ImageMetadata(
                pixel_size=self._image_pixel_size(settings, reported),
                beam_type=settings.beam.value,
                timestamp=now_iso(),
                extra={
                    "image_settings": to_dict(settings),
                    "microscope_state": to_dict(self._snapshot()),
                    "system": self.config.system_info(),
                },
            )
            image = FibsemImage(data, meta)
            self._last_images[settings.beam] = image
            if settings.save_path:
                write_image(settings.save_path, data, meta)
            return image

        return self._op("acquire_image", {"settings": settings}, run)

    def _image_pixel_size(self, settings: ImageSettings, reported: float | None) -> float:
        """The instrument's pixel size if it gave a usable one, else the requested one; a reported
        size more than 1% off (the instrument limited the field width) is logged as a warning."""
        requested = settings.pixel_size
        if reported is None or not (math.isfinite(reported) and reported > 0):
            return requested
        if not math.isclose(reported, requested, rel_tol=_PIXEL_SIZE_TOLERANCE):
            self.events.write(
                "warning",
                {"op": "acquire_image", "beam": settings.beam},
                message=(
                    f"the instrument reports a pixel size of {reported:.4g} m, not the requested "
                    f"{requested:.4g} m (field width {settings.hfw:.4g} m over {settings.resolution[0]} px); "
                    "it probably limited the field width; the image records the reported size"
                ),
                requested_pixel_size=requested,
                reported_pixel_size=reported,
            )
        return float(reported)

    def last_image(self, beam: BeamType | str) -> FibsemImage | None:
        """The most recent image of ``beam`` (None before the first)."""
        return self._last_images.get(BeamType.of(beam))

    def autocontrast(self, beam: BeamType | str) -> None:
        beam = BeamType.of(beam)
        self._op("autocontrast", {"beam": beam}, lambda: self._autocontrast(beam))

    def get_beam_settings(self, beam: BeamType | str) -> BeamSettings:
        beam = BeamType.of(beam)
        return self._op("get_beam_settings", {"beam": beam}, lambda: self._read_beam_settings(beam))

    def set_beam_settings(self, settings: BeamSettings) -> BeamSettings:
        def run() -> BeamSettings:
            self._check_beam_shift(settings.shift)
            self._apply_beam_settings(settings)
            return self._read_beam_settings(settings.beam)

        return self._op("set_beam_settings", {"settings": settings}, run)

    def shift_beam(self, dx: float, dy: float, beam: BeamType | str) -> BeamSettings:
        """Add (dx, dy) metres to the beam shift: the feature at offset (dx, dy) moves to the centre."""
        beam = BeamType.of(beam)

        def run() -> BeamSettings:
            b = self._read_beam_settings(beam)
            shift = (b.shift[0] + dx, b.shift[1] + dy)
            self._check_beam_shift(shift)
            self._apply_beam_settings(dataclasses.replace(b, shift=shift))
            return self._read_beam_settings(beam)

        return self._op("shift_beam", {"dx": dx, "dy": dy, "beam": beam}, run)

    # -- stage ---------------------------------------------------------------------------------

    def get_stage_position(self) -> StagePosition:
        return self._op("get_stage_position", {}, self._read_stage_position)

    def move_stage_absolute(self, position: StagePosition, *, confirm: bool = False) -> StagePosition:
        """Move to ``position``; refused outside the limits, and beyond ``max_step_m`` unless ``confirm``."""
        return self._op(
            "move_stage_absolute",
            {"position": position, "confirm": confirm},
            lambda: self._move_checked(position, confirm),
        )

    def move_stage_relative(
        self,
        dx: float = 0.0,
        dy: float = 0.0,
        dz: float = 0.0,
        dr: float = 0.0,
        dt: float = 0.0,
        *,
        confirm: bool = False,
    ) -> StagePosition:
        """Move by a delta in stage axes (metres, radians)."""

        def run() -> StagePosition:
            pos = self._read_stage_position()
            return self._move_checked(pos.moved(dx, dy, dz, dr, dt), confirm, pos)

        args = {"dx": dx, "dy": dy, "dz": dz, "dr": dr, "dt": dt, "confirm": confirm}
        return self._op("move_stage_relative", args, run)

    def stable_move(
        self, dx: float, dy: float, beam: BeamType | str, *, confirm: bool = False
    ) -> StagePosition:
        """Bring the feature at image offset (dx, dy) metres (+y up) of ``beam`` to the image centre,
        moving in the sample plane so its height (focus, eucentricity) is kept."""
        beam = BeamType.of(beam)

        def run() -> StagePosition:
            pos = self._read_stage_position()
            return self._move_checked(pos.moved(*self._stable_move_delta(dx, dy, beam, pos)), confirm, pos)

        return self._op("stable_move", {"dx": dx, "dy": dy, "beam": beam, "confirm": confirm}, run)

    def vertical_move(self, dy: float, beam: BeamType | str, *, confirm: bool = False) -> StagePosition:
        """Bring the feature at vertical offset ``dy`` (+y up) of ``beam`` onto its centre line
        without moving it in the other beam's image (eucentric correction; x unchanged)."""
        beam = BeamType.of(beam)

        def run() -> StagePosition:
            pos = self._read_stage_position()
            return self._move_checked(pos.moved(*self._vertical_move_delta(dy, beam, pos)), confirm, pos)

        return self._op("vertical_move", {"dy": dy, "beam": beam, "confirm": confirm}, run)

    def _stable_move_delta(
        self, dx: float, dy: float, beam: BeamType, pos: StagePosition
    ) -> tuple[float, float, float]:
        """Stage (dx, dy, dz) for ``stable_move``; an adapter whose raw stage axes do not tilt with
        the sample overrides this (and ``_vertical_move_delta``)."""
        return geometry.stable_move_delta(dx, dy, self.beam_angle(beam, pos))

    def _vertical_move_delta(
        self, dy: float, beam: BeamType, pos: StagePosition
    ) -> tuple[float, float, float]:
        theta, other = self.beam_angle(beam, pos), self.beam_angle(geometry.other_beam(beam), pos)
        return geometry.vertical_move_delta(dy, theta, other)

    def beam_angle(self, beam: BeamType | str, stage: StagePosition | None = None) -> float:
        """Angle (rad) between ``beam`` and the sample normal at ``stage`` (default: now)."""
        stage = stage if stage is not None else self._read_stage_position()
        c = self.config
        return geometry.beam_angle(stage, c.column_tilt(BeamType.of(beam)), c.pre_tilt, c.reference_rotation)

    # -- manipulator ---------------------------------------------------------------------------

    def get_manipulator_position(self) -> ManipulatorPosition:
        return self._op("get_manipulator_position", {}, self._read_manipulator)

    def insert_manipulator(self) -> ManipulatorPosition:
        return self._op(
            "insert_manipulator", {}, lambda: (self._insert_manipulator(), self._read_manipulator())[1]
        )

    def retract_manipulator(self) -> ManipulatorPosition:
        return self._op(
            "retract_manipulator", {}, lambda: (self._retract_manipulator(), self._read_manipulator())[1]
        )

    def move_manipulator_relative(
        self, dx: float = 0.0, dy: float = 0.0, dz: float = 0.0, *, confirm: bool = False
    ) -> ManipulatorPosition:
        """Move the inserted needle by (dx, dy, dz) metres; large steps need ``confirm``."""

        def run() -> ManipulatorPosition:
            if not self._read_manipulator().inserted:
                raise MicroscopeError("refused: the manipulator is retracted; insert it first")
            step = math.dist((0, 0, 0), (dx, dy, dz))
            if step > self.config.max_step_m and not confirm:
                raise ConfirmationRequired(
                    f"refused: a needle move of {step * 1e6:.1f} µm is larger than the maximum step "
                    f"{self.config.max_step_m * 1e6:.1f} µm; call again with confirm=True"
                )
            self._move_manipulator_relative(dx, dy, dz)
            return self._read_manipulator()

        return self._op("move_manipulator_relative", {"dx": dx, "dy": dy, "dz": dz, "confirm": confirm}, run)

    # -- state ---------------------------------------------------------------------------------

    def get_state(self) -> MicroscopeState:
        return self._op("get_state", {}, self._snapshot)

    def set_state(self, state: MicroscopeState, *, confirm: bool = False) -> MicroscopeState:
        """Restore a snapshot: stage (limits and confirmation apply), both beams, the needle."""

        def run() -> MicroscopeState:
            self._check_limits(state.stage)
            for b in (state.electron, state.ion):
                self._check_beam_shift(b.shift)
            if not confirm:
                self._check_step(self._read_stage_position(), state.stage)
            self._move_stage_absolute(state.stage)
            self._apply_beam_settings(state.electron)
            self._apply_beam_settings(state.ion)
            m = state.manipulator
            if m is not None and self._has_manipulator():
                now = self._read_manipulator()
                if m.inserted and not now.inserted:
                    self._insert_manipulator()
                if m.inserted:
                    now = self._read_manipulator()
                    self._move_manipulator_relative(m.x - now.x, m.y - now.y, m.z - now.z)
                elif now.inserted:
                    self._retract_manipulator()
            return self._snapshot()

        return self._op("set_state", {"state": state, "confirm": confirm}, run)

    def get_chamber_state(self) -> ChamberState:
        """Vacuum state, chamber pressure (Pa) and stage temperature (K), where reported."""
        return self._op("get_chamber_state", {}, self._read_chamber)

    def _snapshot(self) -> MicroscopeState:
        manip = self._read_manipulator() if self._has_manipulator() else None
        return MicroscopeState(
            self._read_stage_position(),
            self._read_beam_settings(BeamType.ELECTRON),
            self._read_beam_settings(BeamType.ION),
            manip,
        )

