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
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from napari_fibsem.core.io.imageio import FibsemImage, ImageMetadata, write_image
from napari_fibsem.core.microscope import gas, geometry
from napari_fibsem.core.microscope.config import MicroscopeConfig
from napari_fibsem.core.microscope.errors import (
    AcquisitionError,
    ConfirmationRequired,
    ConnectionLostError,
    LimitError,
    MicroscopeError,
    NotSupportedError,
    RefusedError,
)
from napari_fibsem.core.microscope.events import EventLog
from napari_fibsem.core.microscope.gas import (
    DepositionProgress,
    DepositionResult,
    GasInjectionSettings,
    GasPort,
    SputterSettings,
)
from napari_fibsem.core.microscope.hooks import InstrumentHooks
from napari_fibsem.core.microscope.structures import (
    BeamSettings,
    BeamType,
    ChamberState,
    ImageSettings,
    ManipulatorPosition,
    MicroscopeState,
    MillingProgress,
    MillingResult,
    MillingSettings,
    Pattern,
    StagePosition,
    now_iso,
    to_dict,
)

R = TypeVar("R")
_REFUSALS = (LimitError, ConfirmationRequired, NotSupportedError, RefusedError)
_PIXEL_SIZE_TOLERANCE = 0.01  # relative: a reported pixel size further off is logged as a warning


class Microscope(InstrumentHooks):
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

    def _check_beam_shift(self, shift: tuple[float, float]) -> None:
        limit = self.config.max_beam_shift_m
        if max(abs(shift[0]), abs(shift[1])) > limit:
            raise LimitError(f"refused: beam shift {shift} m exceeds ±{limit:g} m; move the stage instead")

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

    def check_move(self, current: StagePosition, target: StagePosition, confirm: bool = False) -> None:
        """Raise if ``target`` is outside the limits or too far from ``current`` without ``confirm``."""
        self._check_limits(target)
        if not confirm:
            self._check_step(current, target)

    def _check_limits(self, target: StagePosition) -> None:
        """Refuse a target outside the stage limits (or not a number); needs no instrument call."""
        lim = self.config.stage_limits
        for axis, (lo, hi), value, unit, scale in (
            ("x", lim.x_m, target.x, "mm", 1e3),
            ("y", lim.y_m, target.y, "mm", 1e3),
            ("z", lim.z_m, target.z, "mm", 1e3),
            ("t", lim.tilt_deg, math.degrees(target.t), "°", 1.0),
            ("r", (-math.inf, math.inf), target.r, " rad", 1.0),
        ):
            if not (math.isfinite(value) and lo <= value <= hi):
                raise LimitError(
                    f"refused: target {axis}={value * scale:.4f}{unit} is outside the stage limits "
                    f"[{lo * scale:.4f}, {hi * scale:.4f}]{unit}; nothing moved"
                )

    def _check_step(self, current: StagePosition, target: StagePosition) -> None:
        """Refuse an unconfirmed step beyond ``max_step_m``, or one whose size cannot be known
        because the current position is not a number."""
        step, limit = current.distance_to(target), self.config.max_step_m
        if step <= limit:
            return
        if not math.isfinite(step):
            raise ConfirmationRequired(
                f"refused: the stage position reads x={current.x} y={current.y} z={current.z} m, so the "
                "size of this move cannot be checked; call again with confirm=True to move to the target "
                "anyway; nothing moved"
            )
        raise ConfirmationRequired(
            f"refused: a move of {step * 1e6:.1f} µm is larger than the maximum step "
            f"{limit * 1e6:.1f} µm; call again with confirm=True to move; nothing moved"
        )

    def _move_checked(
        self, target: StagePosition, confirm: bool, current: StagePosition | None = None
    ) -> StagePosition:
        """Check the limits (no instrument call), then, for an unconfirmed move only, the step from
        ``current`` (read now if not given); then move and read where the stage is."""
        self._check_limits(target)
        if not confirm:
            self._check_step(current if current is not None else self._read_stage_position(), target)
        self._move_stage_absolute(target)
        return self._read_stage_position()

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

    # -- the wrapper every public call goes through --------------------------------------------

    def _op(
        self,
        op: str,
        args: dict[str, Any],
        fn: Callable[[], R],
        *,
        needs_connection: bool = True,
        recover: bool = True,
    ) -> R:
        with self._lock:
            t0 = time.monotonic()
            try:
                if needs_connection and not self.connected:
                    raise ConnectionLostError(
                        f"{op}: not connected to {self.config.name}; call reconnect() first"
                    )
                result = fn()
            except Exception as e:
                notes = "".join(f"; {n}" for n in getattr(e, "__notes__", ()))
                err = (
                    e
                    if isinstance(e, MicroscopeError)
                    else MicroscopeError(f"{op} failed: {type(e).__name__}: {e}{notes}")
                )
                after = None
                if recover and needs_connection and not isinstance(e, _REFUSALS) and self.connected:
                    after = self._recover(err)
                self.events.write(
                    op,
                    args,
                    ok=False,
                    error=err,
                    stage_after=after,
                    state_known=self.state_known,
                    duration_s=time.monotonic() - t0,
                )
                if err is e:
                    raise
                raise err from e
            self.events.write(op, args, ok=True, result=result, duration_s=time.monotonic() - t0)
            return result

    def _recover(self, err: MicroscopeError) -> StagePosition | None:
        """Re-read the stage after a failure, so the caller knows where it is."""
        try:
            if isinstance(err, ConnectionLostError):
                raise err
            pos = self._read_stage_position()
        except Exception:
            self.connected = False
            self.state_known = False
            err.args = (f"{err}; state unknown: the connection is lost, call reconnect()",)
            return None
        self.state_known = True
        err.args = (f"{err}; state re-read: stage at x={pos.x:.3e} y={pos.y:.3e} z={pos.z:.3e} m",)
        return pos
