"""A simulated FIB-SEM that renders a synthetic world as each beam sees it.

The world (a lamella in its trench at the origin, the needle, specks; ``_sim_world``) is drawn
once from the seed. Each acquisition maps it through the stage position, beam angle, beam shift,
field width and resolution (``geometry``) and renders it with the synthetic-scene renderer, so:

- moving the stage by +dx moves every feature by -dx / pixel_size image pixels (left), by +dy
  moves it by +dy * cos(theta) / pixel_size pixels *down* (it goes down as the view goes up);
  theta is the beam's angle to the sample normal: 0 for the electron beam and -52° for the ion
  beam at zero tilt and pre-tilt, i.e. the ion image of the sample y is foreshortened by cos 52°;
- the ground-truth class mask of every acquisition is kept (``last_mask(beam)``);
- milling removes material where patterns were run (a trench appears, solid objects such as the
  lamella are trimmed), one band of the pattern per step from its top edge down, so a stopped run
  leaves a partial trench; non-rectangular patterns mill their bounding box; each step advances a
  simulated clock (``simulated_time``) by its share of the pattern's estimated time, so a run
  reports how long it would have taken on an instrument, not the milliseconds it took here;
- the needle (manipulator) is drawn while inserted, offset by its position (z changes its height,
  which the tilted beam sees as vertical motion);
- GIS ports (``simulator.gas_ports``; ``_sim_gas``) insert, heat (room temperature to 45 °C in
  ``delays.gis_heat_s``), open and close; the chamber reads pumped at 1e-4 Pa (more while gas
  flows), the stage -180 °C with ``simulator.cryo``; ``set_vacuum`` vents it for tests; a sputter
  coater (``simulator.sputter_coater``) coats for the time asked;
- faults can be injected (``inject_fault`` or ``simulator.faults`` in the config) and delays
  configured (0 by default). Everything is deterministic given the seed.
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing
from dataclasses import replace

import numpy as np

from napari_fibsem.core.microscope import geometry
from napari_fibsem.core.microscope._sim_gas import GIS_SETPOINT_K as GIS_SETPOINT_K  # re-exported
from napari_fibsem.core.microscope._sim_gas import ROOM_K as ROOM_K  # re-exported
from napari_fibsem.core.microscope._sim_gas import SimulatedGas, _Port
from napari_fibsem.core.microscope._sim_world import Affine, build_world, edges_to_rect, map_object, mill
from napari_fibsem.core.microscope.base import Microscope
from napari_fibsem.core.microscope.config import FaultSpec, MicroscopeConfig, SimulatorConfig
from napari_fibsem.core.microscope.errors import (
    AcquisitionError,
    ConnectionLostError,
    MicroscopeError,
    StageTimeoutError,
)
from napari_fibsem.core.microscope.events import EventLog
from napari_fibsem.core.microscope.structures import (
    BeamSettings,
    BeamType,
    ChamberState,
    ImageSettings,
    ManipulatorPosition,
    MillingSettings,
    Pattern,
    RectanglePattern,
    StagePosition,
    pattern_bounds,
)
from napari_fibsem.core.synthetic.scene import Lamella, SceneConfig, Trench, random_style, render

FAULT_KINDS = ("acquisition", "stage_timeout", "connection_loss", "gis_open", "gis_close")
CRYO_K = 93.15  # -180 °C
VACUUM_STATES = typing.get_args(typing.get_type_hints(ChamberState)["vacuum"])


@dataclasses.dataclass
class _Fault:
    kind: str
    after: int
    count: int


class SimulatedMicroscope(SimulatedGas, Microscope):
    """The default microscope in tests and demos (``manufacturer: Demo``)."""

    def __init__(self, config: MicroscopeConfig | None = None, *, event_log: EventLog | str | None = None) -> None:
        config = config or MicroscopeConfig()
        if not config.is_simulator:
            raise MicroscopeError(f"SimulatedMicroscope needs manufacturer Demo, not {config.manufacturer!r}")
        super().__init__(config, event_log=event_log)
        self.sim: SimulatorConfig = config.simulator or SimulatorConfig()
        self.world, self.needle = build_world(self.sim)
        self._stage = StagePosition()
        self._beams = {
            b: BeamSettings(b, d.voltage_v, d.current_a, d.hfw_m, d.working_distance_m,
                            dwell_time=d.dwell_time_s, resolution=tuple(d.resolution))
            for b, d in ((BeamType.ELECTRON, config.beams.electron), (BeamType.ION, config.beams.ion))
        }
        self._needle_pos = ManipulatorPosition()
        self._masks: dict[BeamType, np.ndarray] = {}
        self._contrast = {b: (1.0, 0.0) for b in BeamType}
        self._frames = 0
        self._milling_runs = 0
        self.simulated_time = 0.0  # s of simulated milling since connecting (the simulated clock)
        self._job: dict | None = None
        self._link_up = False
        self._faults = [_Fault(f.kind, f.after, f.count) for f in self.sim.faults]
        self._ports = {name: _Port() for name in self.sim.gas_ports}
        self._vacuum = "pumped"
        self._sputtering = False
        self.sputtered_s = 0.0  # seconds of sputter coating, in total

    # -- simulator extras ----------------------------------------------------------------------

    def inject_fault(self, kind: str, after: int = 0, count: int = 1) -> None:
        """Make the ``after``-th next matching call fail, ``count`` times. ``acquisition`` counts
        acquisitions, ``stage_timeout`` stage moves, ``connection_loss`` both, ``gis_open`` /
        ``gis_close`` GIS valve openings / closings (a failed opening leaves the valve open)."""
        FaultSpec(kind=kind, after=after, count=count)  # validates
        self._faults.append(_Fault(kind, after, count))

    def clear_faults(self) -> None:
        self._faults.clear()

    def set_vacuum(self, vacuum: str) -> None:
        """Put the chamber into ``vacuum`` ("pumped", "vented", "pumping", "venting", "unknown")."""
        if vacuum not in VACUUM_STATES:
            raise ValueError(f"unknown vacuum state {vacuum!r}; use one of {list(VACUUM_STATES)}")
        self._vacuum = vacuum

    def last_mask(self, beam: BeamType | str) -> np.ndarray | None:
        """Ground-truth class mask of the last acquisition with ``beam``."""
        return self._masks.get(BeamType.of(beam))

    def feature_position(self, kind: type = Lamella) -> tuple[float, float]:
        """Sample (x, y) metres of the centre of the first world object of type ``kind``."""
        o = next(o for o in self.world if isinstance(o, kind))
        a, b = o.rect.centre
        return a * self.sim.world_pixel_size_m, -b * self.sim.world_pixel_size_m

    def affine(self, beam: BeamType, resolution: tuple[int, int], hfw: float, z: float = 0.0) -> Affine:
        """World pixel -> image pixel map of ``beam`` now, for objects at height ``z`` (m)."""
        w, h = resolution
        ps = hfw / w
        theta = self.beam_angle(beam, self._stage)
        if math.cos(theta) < 1e-3:
            raise AcquisitionError(f"the {beam.value} beam sees the sample edge-on ({math.degrees(theta):.1f}°)")
        u0, v0 = geometry.sample_to_image(0.0, 0.0, z, self._stage, theta, self._beams[beam].shift)
        wps = self.sim.world_pixel_size_m
        return Affine(wps / ps, (w - 1) / 2 + u0 / ps, wps * math.cos(theta) / ps, (h - 1) / 2 - v0 / ps)

    # -- hooks ---------------------------------------------------------------------------------

    def _connect(self) -> None:
        time.sleep(self.sim.delays.move_s)
        self._link_up = True

    def _disconnect(self) -> None:
        self._link_up = False

    def _link(self, counts_as: str | None = None) -> None:
        if not self._link_up:
            raise ConnectionLostError("connection to the simulated microscope is lost; call reconnect()")
        if counts_as is not None:
            if self._trip("connection_loss"):
                self._link_up = False
                raise ConnectionLostError("connection to the simulated microscope lost (injected fault)")

    def _trip(self, kind: str) -> bool:
        for f in self._faults:
            if f.kind == kind:
                if f.after > 0:
                    f.after -= 1
                    return False
                f.count -= 1
                if f.count == 0:
                    self._faults.remove(f)
                return True
        return False

    def _acquire(self, settings: ImageSettings) -> np.ndarray:
        self._link("acquire")
        beam = settings.beam
        self._beams[beam] = replace(self._beams[beam], hfw=settings.hfw, resolution=settings.resolution,
                                    dwell_time=settings.dwell_time)
        time.sleep(self.sim.delays.acquire_s)
        if self._trip("acquisition"):
            raise AcquisitionError(f"the {beam.value} beam acquisition failed (injected fault)")
        image, mask = self._render(beam, settings.resolution, settings.hfw, settings.dwell_time)
        gain, offset = self._contrast[beam]
        if (gain, offset) != (1.0, 0.0):
            image = np.clip(image * gain + offset, 0, 255).astype(np.uint8)
        self._masks[beam] = mask
        return image

    def _render(self, beam: BeamType, resolution: tuple[int, int], hfw: float, dwell: float) -> tuple[np.ndarray, np.ndarray]:
        w, h = resolution
        shape = (h, w)
        aff = self.affine(beam, resolution, hfw)
        objects = [m for o in self.world if (m := map_object(o, aff, shape)) is not None]
        if self.needle is not None and self._needle_pos.inserted:
            p, wps = self._needle_pos, self.sim.world_pixel_size_m
            needle = self.needle.shifted(p.x / wps, -p.y / wps)
            m = map_object(needle, self.affine(beam, resolution, hfw, z=p.z), shape)
            if m is not None:
                objects.append(m)
        beam_index = 0 if beam is BeamType.ELECTRON else 1
        scene = SceneConfig(size=shape, beam=beam.value, noise=self.sim.noise)
        style = random_style(np.random.default_rng([self.sim.seed, beam_index, w, h]), scene)
        style = replace(style, dose=style.dose * float(np.clip(dwell / 1e-6, 0.05, 20.0)))
        self._frames += 1
        return render(objects, shape, np.random.default_rng([self.sim.seed, 7, self._frames]), style)

    def _autocontrast(self, beam: BeamType) -> None:
        self._link()
        b = self._beams[beam]
        w, h = b.resolution
        f = max(1, w // 256)
        image, _ = self._render(beam, (max(48, w // f), max(48, h // f)), b.hfw, b.dwell_time)
        lo, hi = np.percentile(image, (1, 99))
        gain = 235.0 / max(float(hi - lo), 1.0)
        self._contrast[beam] = (gain, 10.0 - gain * float(lo))

    def _read_stage_position(self) -> StagePosition:
        self._link()
        return self._stage

    def _move_stage_absolute(self, position: StagePosition) -> None:
        self._link("move")
        start = self._stage
        time.sleep(self.sim.delays.move_s)
        if self._trip("stage_timeout"):
            half = StagePosition(*((a + b) / 2 for a, b in zip(
                (start.x, start.y, start.z, start.r, start.t),
                (position.x, position.y, position.z, position.r, position.t))), start.coordinate_system)
            self._stage = half
            raise StageTimeoutError("the stage did not reach its target in time (injected fault); it stopped on the way")
        self._stage = position

    def _read_beam_settings(self, beam: BeamType) -> BeamSettings:
        self._link()
        return self._beams[beam]

    def _apply_beam_settings(self, settings: BeamSettings) -> None:
        self._link()
        self._beams[settings.beam] = settings

    def _has_manipulator(self) -> bool:
        return self.needle is not None

    def _read_manipulator(self) -> ManipulatorPosition:
        self._link()
        if self.needle is None:
            return super()._read_manipulator()
        return self._needle_pos

    def _insert_manipulator(self) -> None:
        self._read_manipulator()
        time.sleep(self.sim.delays.move_s)
        self._needle_pos = ManipulatorPosition(inserted=True)  # the park position, near the lamella

    def _retract_manipulator(self) -> None:
        p = self._read_manipulator()
        time.sleep(self.sim.delays.move_s)
        self._needle_pos = replace(p, inserted=False)

    def _move_manipulator_relative(self, dx: float, dy: float, dz: float) -> None:
        p = self._read_manipulator()
        time.sleep(self.sim.delays.move_s)
        self._needle_pos = replace(p, x=p.x + dx, y=p.y + dy, z=p.z + dz)

    def _setup_milling(self, settings: MillingSettings) -> None:
        self._link()
        b = self._beams[BeamType.ION]
        self._beams[BeamType.ION] = replace(b, current=settings.current, voltage=settings.voltage, hfw=settings.hfw)

    def _start_milling(self, patterns: list[Pattern], settings: MillingSettings) -> int:
        self._link()
        theta = self.beam_angle(BeamType.ION, self._stage)
        shift, wps = self._beams[BeamType.ION].shift, self.sim.world_pixel_size_m
        boxes = []
        for p in patterns:  # world-pixel box (a0, b0, a1, b1); b0 is the top edge in the image
            x0, y0, x1, y1 = pattern_bounds(p) if not isinstance(p, RectanglePattern) or p.rotation else (
                p.centre_x - p.width / 2, p.centre_y - p.height / 2, p.centre_x + p.width / 2, p.centre_y + p.height / 2)
            sx0, sy1 = geometry.image_to_sample(x0, y1, self._stage, theta, shift)
            sx1, sy0 = geometry.image_to_sample(x1, y0, self._stage, theta, shift)
            boxes.append((sx0 / wps, -sy1 / wps, sx1 / wps, -sy0 / wps))
        self._milling_runs += 1
        n = self.sim.milling_steps
        step_s = [self.estimate_milling_time([p], settings) / n for p in patterns]
        self._job = {"boxes": boxes, "step": 0, "total": n * len(boxes), "trenches": {}, "step_s": step_s}
        return self._job["total"]

    def _mill_step(self) -> tuple[int, int, int]:
        self._link()
        job = self._job
        if job is None:
            raise MicroscopeError("no milling job is running")
        n = self.sim.milling_steps
        k = job["step"]
        i, frac = k // n, (k % n + 1) / n
        a0, b0, a1, b1 = job["boxes"][i]
        time.sleep(self.sim.delays.milling_step_s)
        self.simulated_time += job["step_s"][i]
        band_bottom = b0 + frac * (b1 - b0)
        if band_bottom - b0 >= 0.5 and a1 - a0 >= 0.5:
            cut = edges_to_rect(a0, a1, b0, band_bottom)
            self.world = mill(self.world, cut)
            trench = Trench(cut, seed=self.sim.seed * 1000 + self._milling_runs * 37 + i, brightness=0.09,
                            wall=max(1, round(0.1 * cut.height)))
            old = job["trenches"].get(i)
            if old is not None:
                self.world.remove(old)
            self.world.append(trench)
            job["trenches"][i] = trench
        job["step"] = k + 1
        return k + 1, job["total"], i

    def _stop_milling(self) -> None:
        self._job = None

    def _simulated_clock(self) -> float:
        return self.simulated_time

    def _read_chamber(self) -> ChamberState:
        self._link()
        flowing = any(p.open for p in self._ports.values())
        pumped = 8.0 if self._sputtering else 5e-4 if flowing else 1e-4  # argon / precursor / none
        pressure = {"pumped": pumped, "pumping": 1.0, "venting": 1e3, "vented": 1e5}.get(self._vacuum)
        return ChamberState(self._vacuum, pressure, CRYO_K if self.sim.cryo else None, raw=self._vacuum)
