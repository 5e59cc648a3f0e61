"""TESCAN FIB-SEMs through the TESCAN Automation SDK (``tescanautomation``, over SharkSEM).

Only TESCAN Automation's calls and units live here; safety, logging, recovery, the SDK import (on
``connect()``, never with this module) and error translation come from
:class:`~napari_fibsem.core.microscope._vendor.VendorMicroscope`.

Mapping. Electron beam = ``SEM``, ion beam = ``FIB`` (``Automation.SEM`` / ``Automation.FIB``);
images come from scan channel 0 of that column, with whichever detector the TESCAN software has
on that channel. Automation speaks millimetres (stage, view field, working distance, image
shift), degrees (stage rotation/tilt, image rotation), nanoseconds (dwell time) and picoamperes
(beam current); DrawBeam takes metres (``DepthUnit='m'``), amperes and m^3/C. All conversions
are in the "units" section below and nowhere else. Stage x, y, z, rotation, tilt map one to
one onto :class:`StagePosition` (raw coordinates); image shift and DrawBeam shape coordinates
(metres from the image centre, +y up) pass through as they are.

Limits of the API (they raise :class:`NotSupportedError`): the FIB current and voltage are set
through presets in the TESCAN software, not here (a request that differs from the active preset
is refused); the FIB has no working distance to set, the adapter reports the configured one;
stigmation is neither read (reported as 0, 0) nor written; polygon patterns; the manipulator
(the API reports no inserted/retracted state). Dwell time and resolution are per acquisition on
TESCAN, so the beam settings report the last ones used (the configured defaults at first).

Where the names come from. No TESCAN Automation reference was reachable while this was written;
the names were checked against OpenFIBSEM's TescanMicroscope (DeMarcoLab/fibsem), which drives
real instruments: ``Automation(ip, port)`` (port 8300), ``Disconnect()``, ``Stage.GetPosition()``
(x, y, z in mm, rotation and tilt in degrees) and ``Stage.MoveTo(x=, y=, z=, rot=, tiltx=)`` (the
stage is ``Automation.Stage``, not ``SEM.Stage``, and the tilt keyword is ``tiltx``),
``<col>.Optics.GetViewfield/SetViewfield`` (mm), ``SEM.Optics.GetWD/SetWD`` (mm),
``<col>.Optics.GetImageShift/SetImageShift`` (mm), ``GetImageRotation/SetImageRotation`` (deg),
``<col>.Scan.AcquireImageFromChannel(channel, width, height, dwell_ns)`` returning a document with
``.Image`` and ``.Header["MAIN"]["PixelSizeX"]`` (m), ``SEM.Beam.GetCurrent/SetCurrent`` (pA),
``FIB.Beam.ReadProbeCurrent`` (pA), ``Beam.GetVoltage/SetVoltage`` (V), ``Beam.GetStatus()``
against ``Beam.Status.BeamOn``, ``Beam.On/Off``, ``Detector.Get(Channel=0)``,
``Detector.AutoSignal(Detector=)``, and for milling ``tescanautomation.DrawBeam.IEtching``,
``DrawBeam.Status``, ``Automation.DrawBeam.Layer(name, settings)``, ``layer.addRectangleFilled``
/ ``addLine`` / ``addAnnulusFilled``, ``DrawBeam.LoadLayer/UnloadLayer/Start/Stop/GetStatus``
(status, total s, elapsed s). Gas injection and chamber readings are in ``_tescan_gas`` (with
where their names come from). Not verified on an instrument: which ``IEtching`` arguments are
optional, whether ``Stage.MoveTo`` blocks until the stage stops, and the sign conventions of stage
x/y, image shift and DrawBeam y relative to the image.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_fibsem.core.microscope._tescan_gas import AutomationGas
from napari_fibsem.core.microscope._vendor import differs, host_port
from napari_fibsem.core.microscope.config import MicroscopeConfig
from napari_fibsem.core.microscope.errors import (
    AcquisitionError,
    ConnectionLostError,
    MicroscopeError,
    NotSupportedError,
    StageTimeoutError,
)
from napari_fibsem.core.microscope.events import EventLog
from napari_fibsem.core.microscope.structures import (
    BeamSettings,
    BeamType,
    CirclePattern,
    ImageSettings,
    LinePattern,
    MillingSettings,
    Pattern,
    PolygonPattern,
    RectanglePattern,
    StagePosition,
)

SDK = "tescanautomation"
DEFAULT_PORT = 8300
_INSTALL = (
    f"the Tescan adapter is not available: its SDK, TESCAN Automation (Python package {SDK!r}, with "
    "SharkSEM), cannot be imported ({error}). It is not on PyPI: install it from TESCAN into this "
    "Python environment, or use 'manufacturer: Demo' for the simulator"
)
_COLUMN = {BeamType.ELECTRON: "SEM", BeamType.ION: "FIB"}
_CHANNEL = 0  # scan channel the images are read from
_PRESET_TOLERANCE = 0.05  # relative: a measured FIB current this close to a request counts as equal


# -- units: every conversion between SI and TESCAN Automation ----------------------------------


def _to_mm(metres: float) -> float:
    return metres * 1e3


def _from_mm(mm: float) -> float:
    return float(mm) / 1e3


def _to_deg(radians: float) -> float:
    return math.degrees(radians)


def _from_deg(degrees: float) -> float:
    return math.radians(float(degrees))


def _from_image_rotation(degrees: float) -> float:
    """Scan rotation; the TESCAN simulator reports NaN for it, which is read as no rotation."""
    d = float(degrees)
    return 0.0 if math.isnan(d) else math.radians(d)


def _to_ns(seconds: float) -> int:
    return round(seconds * 1e9)


def _to_pA(amperes: float) -> float:
    return amperes * 1e12


def _from_pA(picoamperes: float) -> float:
    return float(picoamperes) / 1e12


def _stage_to_tescan(p: StagePosition) -> dict[str, float]:
    return {"x": _to_mm(p.x), "y": _to_mm(p.y), "z": _to_mm(p.z), "rot": _to_deg(p.r), "tiltx": _to_deg(p.t)}


def _stage_from_tescan(values: Sequence[float]) -> StagePosition:
    x, y, z, rot, tilt = values[:5]  # a 6-axis stage adds tilt y
    p = StagePosition(_from_mm(x), _from_mm(y), _from_mm(z), _from_deg(rot), _from_deg(tilt))
    if not all(math.isfinite(v) for v in (p.x, p.y, p.z, p.r, p.t)):
        raise MicroscopeError(f"TESCAN reports a stage position that is not a number: {tuple(values)}")
    return p


# -- small helpers -------------------------------------------------------------------------------


def _header_pixel_size(doc) -> float | None:
    """``Header["MAIN"]["PixelSizeX"]`` (metres) of an acquired document, None if absent."""
    try:
        return float(doc.Header["MAIN"]["PixelSizeX"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


class TescanMicroscope(AutomationGas):
    """A TESCAN FIB-SEM driven through TESCAN Automation (``manufacturer: Tescan``)."""

    manufacturer = "Tescan"
    sdk_name = "TESCAN Automation"
    sdk_modules = {"automation": SDK, "drawbeam": f"{SDK}.DrawBeam"}
    install_hint = _INSTALL

    def __init__(
        self, config: MicroscopeConfig | None = None, *, event_log: EventLog | str | Path | None = None
    ) -> None:
        super().__init__(config, event_log=event_log)
        beams = self.config.beams
        defaults = {BeamType.ELECTRON: beams.electron, BeamType.ION: beams.ion}
        self._scan = {b: (d.dwell_time_s, tuple(d.resolution)) for b, d in defaults.items()}

    # -- SDK access ----------------------------------------------------------------------------

    def _column(self, beam: BeamType):
        return getattr(self._api(), _COLUMN[beam])

    # -- connection ----------------------------------------------------------------------------

    def _connect(self) -> None:
        sdk = self._import_sdk()
        host, port = host_port(self.config.ip_address, DEFAULT_PORT)
        with self._calling(f"connect to TESCAN Automation at {host}:{port}", ConnectionLostError):
            self._conn = sdk.automation.Automation(host, port)
        self._sdk = sdk

    def _disconnect(self) -> None:
        auto, self._conn = self._conn, None
        if auto is not None:
            with self._calling("disconnect from TESCAN Automation"):
                auto.Disconnect()

    # -- imaging -------------------------------------------------------------------------------

    def _acquire(self, settings: ImageSettings) -> tuple[np.ndarray, float | None]:
        """The image and the pixel size in its header (the base class records that)."""
        col = self._column(settings.beam)
        w, h = settings.resolution
        with self._calling(
            f"{settings.beam.value} beam acquisition ({_COLUMN[settings.beam]})", AcquisitionError
        ):
            col.Optics.SetViewfield(_to_mm(settings.hfw))
            doc = col.Scan.AcquireImageFromChannel(_CHANNEL, w, h, _to_ns(settings.dwell_time))
            data = np.asarray(doc.Image)
        self._scan[settings.beam] = (settings.dwell_time, settings.resolution)
        return data, _header_pixel_size(doc)

    def _autocontrast(self, beam: BeamType) -> None:
        col = self._column(beam)
        with self._calling(f"{beam.value} beam auto signal ({_COLUMN[beam]})"):
            col.Detector.AutoSignal(Detector=col.Detector.Get(Channel=_CHANNEL))

    def _read_beam_settings(self, beam: BeamType) -> BeamSettings:
        col = self._column(beam)
        dwell, resolution = self._scan[beam]
        with self._calling(f"read the {beam.value} beam settings ({_COLUMN[beam]})"):
            if beam is BeamType.ELECTRON:
                current, wd = _from_pA(col.Beam.GetCurrent()), _from_mm(col.Optics.GetWD())
            else:
                current, wd = _from_pA(col.Beam.ReadProbeCurrent()), self.config.beams.ion.working_distance_m
            sx, sy = col.Optics.GetImageShift()[:2]
            return BeamSettings(
                beam,
                voltage=float(col.Beam.GetVoltage()),
                current=current,
                hfw=_from_mm(col.Optics.GetViewfield()),
                working_distance=wd,
                shift=(_from_mm(sx), _from_mm(sy)),
                stigmation=(0.0, 0.0),
                scan_rotation=_from_image_rotation(col.Optics.GetImageRotation()),
                dwell_time=dwell,
                resolution=resolution,
                enabled=col.Beam.GetStatus() == col.Beam.Status.BeamOn,
            )

    def _apply_beam_settings(self, settings: BeamSettings) -> None:
        """Refuse what the API cannot set before writing anything, then write what differs."""
        beam, now = settings.beam, self._read_beam_settings(settings.beam)
        ion = beam is BeamType.ION
        fixed = []
        if ion and differs(settings.voltage, now.voltage):
            fixed.append(f"voltage {settings.voltage:g} V (now {now.voltage:g} V)")
        if ion and differs(settings.current, now.current, _PRESET_TOLERANCE):
            fixed.append(f"current {settings.current:.3g} A (now {now.current:.3g} A)")
        if ion and differs(settings.working_distance, now.working_distance):
            fixed.append("working distance")
        if any(map(differs, settings.stigmation, now.stigmation)):
            fixed.append("stigmation")
        if fixed:
            raise NotSupportedError(
                f"the Tescan adapter cannot set the {beam.value} beam's {', '.join(fixed)}; "
                "choose a preset with these values in the TESCAN software"
            )
        col = self._column(beam)
        with self._calling(f"set the {beam.value} beam settings ({_COLUMN[beam]})"):
            if not ion and differs(settings.voltage, now.voltage):
                col.Beam.SetVoltage(settings.voltage)
            if not ion and differs(settings.current, now.current):
                col.Beam.SetCurrent(_to_pA(settings.current))
            if not ion and differs(settings.working_distance, now.working_distance):
                col.Optics.SetWD(_to_mm(settings.working_distance))
            if differs(settings.hfw, now.hfw):
                col.Optics.SetViewfield(_to_mm(settings.hfw))
            if any(map(differs, settings.shift, now.shift)):
                col.Optics.SetImageShift(_to_mm(settings.shift[0]), _to_mm(settings.shift[1]))
            if differs(settings.scan_rotation, now.scan_rotation):
                col.Optics.SetImageRotation(_to_deg(settings.scan_rotation))
            if settings.enabled != now.enabled:
                col.Beam.On() if settings.enabled else col.Beam.Off()
        self._scan[beam] = (settings.dwell_time, settings.resolution)

    # -- stage ---------------------------------------------------------------------------------

    def _read_stage_position(self) -> StagePosition:
        stage = self._api().Stage
        with self._calling("read the stage position"):
            return _stage_from_tescan(stage.GetPosition())

    def _move_stage_absolute(self, position: StagePosition) -> None:
        self._require_raw(position)
        stage = self._api().Stage
        with self._calling("stage move", timeout=StageTimeoutError):
            stage.MoveTo(**_stage_to_tescan(position))

    # -- manipulator ---------------------------------------------------------------------------

    def _read_manipulator(self):
        raise NotSupportedError(
            "the Tescan adapter does not drive the manipulator: TESCAN Automation "
            "reports no inserted/retracted state for it; use the TESCAN software"
        )

    _insert_manipulator = _retract_manipulator = _read_manipulator

    def _move_manipulator_relative(self, dx: float, dy: float, dz: float) -> None:
        self._read_manipulator()

    # -- milling -------------------------------------------------------------------------------

    def _check_fib(self, settings: MillingSettings) -> None:
        """The FIB's current and voltage come from its preset; refuse a run that assumes others."""
        now = self._read_beam_settings(BeamType.ION)
        if differs(settings.voltage, now.voltage) or differs(
            settings.current, now.current, _PRESET_TOLERANCE
        ):
            raise NotSupportedError(
                f"the Tescan adapter cannot set the FIB to {settings.voltage:g} V, {settings.current:.3g} A "
                f"(it is at {now.voltage:g} V, {now.current:.3g} A): activate a FIB preset with these "
                "values in the TESCAN software first"
            )

    def _setup_milling(self, settings: MillingSettings) -> None:
        self._check_fib(settings)
        fib = self._column(BeamType.ION)
        with self._calling("set up FIB milling"):
            fib.Optics.SetViewfield(_to_mm(settings.hfw))

    def _add(self, layer, p: Pattern) -> None:
        """One DrawBeam shape: metres from the view-field centre, +y up, depth in metres."""
        depth = {"Depth": p.depth, "DepthUnit": "m"}
        if isinstance(p, RectanglePattern):
            size = {"Width": p.width, "Height": p.height, "Angle": _to_deg(p.rotation)}
            layer.addRectangleFilled(CenterX=p.centre_x, CenterY=p.centre_y, **size, **depth)
        elif isinstance(p, LinePattern):
            layer.addLine(BeginX=p.start_x, BeginY=p.start_y, EndX=p.end_x, EndY=p.end_y, **depth)
        elif isinstance(p, CirclePattern):
            layer.addAnnulusFilled(
                CenterX=p.centre_x, CenterY=p.centre_y, RadiusA=p.radius, RadiusB=0.0, **depth
            )
        else:  # polygons are refused in _start_milling before anything is sent
            raise NotSupportedError(f"the Tescan adapter cannot mill a {type(p).__name__}")

    def _start_milling(self, patterns: list[Pattern], settings: MillingSettings) -> int:
        if not patterns:
            return 0  # nothing to mill: the run is complete without touching the instrument
        polygons = [i for i, p in enumerate(patterns) if isinstance(p, PolygonPattern)]
        if polygons:
            raise NotSupportedError(
                f"the Tescan adapter cannot mill polygon patterns (pattern {polygons}); "
                "use rectangles, lines or circles"
            )
        self._check_fib(settings)
        db, module = self._api().DrawBeam, self._sdk.drawbeam
        with self._calling("start DrawBeam milling"):
            if db.GetStatus()[0] != module.Status.ProjectNotLoaded:
                db.UnloadLayer()
            layer = db.Layer(
                "napari-fibsem",
                module.IEtching(
                    syncWriteField=False,
                    writeFieldSize=settings.hfw,
                    beamCurrent=settings.current,
                    rate=settings.rate,
                    parallel=settings.patterning_mode == "parallel",
                ),
            )
            for p in patterns:
                self._add(layer, p)
            db.LoadLayer(layer)
            db.Start()
        self._job = {"t0": time.monotonic(), "n": len(patterns), "seen": False, "done": 0}
        return 100

    def _mill_step(self) -> tuple[int, int, int]:
        """Wait one poll and read DrawBeam's (status, total s, elapsed s)."""
        job = self._poll_job()
        db, status = self._api().DrawBeam, self._sdk.drawbeam.Status
        with self._calling("read the DrawBeam status"):
            state, total, elapsed = db.GetStatus()[:3]
        finished = total > 0 and elapsed >= total
        if state == status.ProjectLoadedExpositionInProgress:
            job["seen"] = True
            if total > 0:
                job["done"] = max(job["done"], min(99, int(100 * elapsed / total)))
        elif state == status.ProjectLoadedExpositionIdle and (job["seen"] or finished):
            self._job = None
            with self._calling("unload the DrawBeam layer"):
                db.UnloadLayer()
            return 100, 100, job["n"] - 1
        elif state == status.ProjectLoadedExpositionIdle:
            if time.monotonic() - job["t0"] > self.start_timeout_s:
                raise MicroscopeError(f"DrawBeam did not start within {self.start_timeout_s:g} s")
        elif state != status.ProjectLoadedExpositionPaused:
            raise MicroscopeError(f"DrawBeam reports {getattr(state, 'name', state)} while milling")
        return job["done"], 100, min(job["n"] - 1, job["done"] * job["n"] // 100)

    def _stop_milling(self) -> None:
        self._job = None
        if self._conn is None or self._sdk is None:
            return
        db, status = self._conn.DrawBeam, self._sdk.drawbeam.Status
        with self._calling("stop DrawBeam milling"):
            state = db.GetStatus()[0]
            if state in (status.ProjectLoadedExpositionInProgress, status.ProjectLoadedExpositionPaused):
                db.Stop()
            if state != status.ProjectNotLoaded:
                db.UnloadLayer()
