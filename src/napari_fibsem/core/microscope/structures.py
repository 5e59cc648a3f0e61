"""Plain data of the microscope layer: frozen dataclasses and enums, SI units throughout.

Lengths are metres, angles radians, times seconds, currents amperes, voltages volts (the
config YAML is the one place that takes degrees, and says so in its key names). Image-plane
coordinates are metres from the image centre with +x right and +y **up** (microscope
convention); pixel coordinates elsewhere in the project are y down.

Serialisation is generic: :func:`to_dict` (``dataclasses.asdict`` plus enum values and a
``kind`` tag on patterns) and one loader :func:`from_dict` that rebuilds any of these classes
from its type hints, so YAML/JSON round trips need no per-class code.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")


class BeamType(str, Enum):
    """Which column: the SEM (electron) or the FIB (ion)."""

    ELECTRON = "electron"
    ION = "ion"

    @classmethod
    def of(cls, value: BeamType | str) -> BeamType:
        """Accept ``BeamType``, ``"electron"``/``"ion"`` or OpenFIBSEM's ``"ELECTRON"``/``"ION_BEAM"``."""
        if isinstance(value, cls):
            return value
        key = str(value).strip().lower().removesuffix("_beam")
        try:
            return cls(key)
        except ValueError:
            raise ValueError(f"unknown beam {value!r}; use 'electron' or 'ion'") from None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True)
class ImageSettings:
    """How to acquire one image. ``save_path`` (a .tif) writes it with its metadata as well."""

    resolution: tuple[int, int] = (1536, 1024)  # (width, height) pixels
    dwell_time: float = 1e-6  # s per pixel
    hfw: float = 150e-6  # horizontal field width, m
    beam: BeamType = BeamType.ELECTRON
    autocontrast: bool = True
    save_path: str | None = None

    def __post_init__(self) -> None:
        w, h = (int(v) for v in self.resolution)
        object.__setattr__(self, "resolution", (w, h))
        object.__setattr__(self, "beam", BeamType.of(self.beam))
        if w < 1 or h < 1:
            raise ValueError(f"resolution must be positive (width, height), not {self.resolution}")
        if not self.dwell_time > 0 or not self.hfw > 0:
            raise ValueError(f"dwell_time and hfw must be positive, not {self.dwell_time}, {self.hfw}")

    @property
    def pixel_size(self) -> float:
        """Metres per pixel: the field width over the image width (square pixels)."""
        return self.hfw / self.resolution[0]


@dataclass(frozen=True)
class StagePosition:
    """Stage coordinates: x, y, z in metres, rotation ``r`` and tilt ``t`` in radians."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    r: float = 0.0
    t: float = 0.0
    coordinate_system: Literal["raw", "specimen"] = "raw"

    def moved(self, dx: float = 0.0, dy: float = 0.0, dz: float = 0.0, dr: float = 0.0, dt: float = 0.0) -> StagePosition:
        return dataclasses.replace(self, x=self.x + dx, y=self.y + dy, z=self.z + dz, r=self.r + dr, t=self.t + dt)

    def distance_to(self, other: StagePosition) -> float:
        """Translation distance in metres (angles ignored)."""
        return math.dist((self.x, self.y, self.z), (other.x, other.y, other.z))

    def is_close(self, other: StagePosition, tol: float = 1e-9, atol_rad: float = 1e-6) -> bool:
        return self.distance_to(other) <= tol and abs(self.r - other.r) <= atol_rad and abs(self.t - other.t) <= atol_rad


@dataclass(frozen=True)
class BeamSettings:
    """One column's settings. ``shift`` is the beam shift in image metres (+x right, +y up)."""

    beam: BeamType
    voltage: float  # V
    current: float  # A
    hfw: float  # m
    working_distance: float = 4e-3  # m
    shift: tuple[float, float] = (0.0, 0.0)  # m
    stigmation: tuple[float, float] = (0.0, 0.0)
    scan_rotation: float = 0.0  # rad
    dwell_time: float = 1e-6  # s
    resolution: tuple[int, int] = (1536, 1024)  # (width, height)
    enabled: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "beam", BeamType.of(self.beam))
        object.__setattr__(self, "shift", tuple(float(v) for v in self.shift))


@dataclass(frozen=True)
class ManipulatorPosition:
    """Needle position in metres (x, y in the sample plane, z up) and whether it is inserted."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    inserted: bool = False


@dataclass(frozen=True)
class ChamberState:
    """Chamber readings, where the instrument reports them (None: it does not). ``raw`` is the
    vacuum state in the instrument's own words."""

    vacuum: Literal["pumped", "venting", "vented", "pumping", "unknown"] = "unknown"
    pressure: float | None = None  # Pa
    temperature: float | None = None  # K (cryo stage; -180 °C = 93.15 K)
    raw: str | None = None

    @property
    def temperature_celsius(self) -> float | None:
        return None if self.temperature is None else self.temperature - 273.15


@dataclass(frozen=True)
class MicroscopeState:
    """A snapshot to restore later: stage, both beams and the needle."""

    stage: StagePosition
    electron: BeamSettings
    ion: BeamSettings
    manipulator: ManipulatorPosition | None = None
    timestamp: str = field(default_factory=now_iso)

    def beam(self, beam: BeamType | str) -> BeamSettings:
        return self.electron if BeamType.of(beam) is BeamType.ELECTRON else self.ion


# -- milling -----------------------------------------------------------------------------------
# Pattern coordinates are image-plane metres from the image centre, +x right, +y up.


@dataclass(frozen=True)
class RectanglePattern:
    centre_x: float
    centre_y: float
    width: float
    height: float
    depth: float
    rotation: float = 0.0  # rad
    kind: Literal["rectangle"] = field(default="rectangle", init=False)

    @property
    def area(self) -> float:
        return self.width * self.height


@dataclass(frozen=True)
class LinePattern:
    start_x: float
    start_y: float
    end_x: float
    end_y: float
    depth: float
    width: float = 50e-9  # m, the beam's line width
    kind: Literal["line"] = field(default="line", init=False)

    @property
    def area(self) -> float:
        return math.hypot(self.end_x - self.start_x, self.end_y - self.start_y) * self.width


@dataclass(frozen=True)
class CirclePattern:
    centre_x: float
    centre_y: float
    radius: float
    depth: float
    kind: Literal["circle"] = field(default="circle", init=False)

    @property
    def area(self) -> float:
        return math.pi * self.radius**2


@dataclass(frozen=True)
class PolygonPattern:
    vertices: tuple[tuple[float, float], ...]
    depth: float
    kind: Literal["polygon"] = field(default="polygon", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vertices", tuple((float(x), float(y)) for x, y in self.vertices))
        if len(self.vertices) < 3:
            raise ValueError(f"a polygon needs at least 3 vertices, got {len(self.vertices)}")

    @property
    def area(self) -> float:  # shoelace
        v = self.vertices
        return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(v, v[1:] + v[:1]))) / 2


Pattern = Union[RectanglePattern, LinePattern, CirclePattern, PolygonPattern]  # noqa: UP007 (runtime union)


def pattern_bounds(p: Pattern) -> tuple[float, float, float, float]:
    """(x_min, y_min, x_max, y_max) of a pattern in image metres (rotation included)."""
    if isinstance(p, RectanglePattern):
        c, s = abs(math.cos(p.rotation)), abs(math.sin(p.rotation))
        hw, hh = (p.width * c + p.height * s) / 2, (p.width * s + p.height * c) / 2
        return p.centre_x - hw, p.centre_y - hh, p.centre_x + hw, p.centre_y + hh
    if isinstance(p, LinePattern):
        r = p.width / 2
        return min(p.start_x, p.end_x) - r, min(p.start_y, p.end_y) - r, max(p.start_x, p.end_x) + r, max(p.start_y, p.end_y) + r
    if isinstance(p, CirclePattern):
        return p.centre_x - p.radius, p.centre_y - p.radius, p.centre_x + p.radius, p.centre_y + p.radius
    xs, ys = zip(*p.vertices)
    return min(xs), min(ys), max(xs), max(ys)


@dataclass(frozen=True)
class MillingSettings:
    """Ion-beam conditions for milling. ``rate`` is the sputter rate in m^3 per A·s (silicon at
    30 kV is ~0.27 µm³/nA/s = 2.7e-10); it turns pattern volume into milling time."""

    current: float = 2e-9  # A
    voltage: float = 30e3  # V
    hfw: float = 80e-6  # m
    application_file: str = "Si"
    patterning_mode: Literal["serial", "parallel"] = "serial"
    rate: float = 2.7e-10  # m^3 / (A s)

    def __post_init__(self) -> None:
        if not self.current > 0 or not self.rate > 0:
            raise ValueError(f"milling current and rate must be positive, not {self.current}, {self.rate}")


@dataclass(frozen=True)
class MillingProgress:
    """One progress report of ``run_milling``; ``step / total`` drives a progress bar."""

    step: int
    total: int
    pattern: int  # index of the pattern being milled
    elapsed: float  # s
    remaining: float  # s, estimated
    message: str = ""
    simulated_s: float | None = None  # a simulator's clock since the start; None on an instrument

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0


@dataclass(frozen=True)
class MillingResult:
    """How a milling run ended: ``completed`` or stopped after ``steps_done`` of ``steps_total``.
    ``elapsed`` is wall-clock time; a simulator also reports the simulated duration (``simulated_s``),
    the time the run would have taken on an instrument."""

    completed: bool
    steps_done: int
    steps_total: int
    elapsed: float  # s
    simulated_s: float | None = None


# -- generic (de)serialisation -----------------------------------------------------------------


def to_dict(obj: Any) -> Any:
    """JSON/YAML-ready plain data of any structure here (enums as values, tuples as lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return obj.item()
    return obj


def from_dict(cls: type[T], data: Any) -> T:
    """Rebuild ``cls`` (a dataclass here, or a type hint such as ``list[Pattern]``) from plain data.

    Unknown keys raise a ``ValueError`` naming them, so a typo in a saved state is not ignored.
    """
    return _convert(cls, data, cls.__name__ if isinstance(cls, type) else str(cls))


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if isinstance(value, dict) and "kind" in value:
            tagged = {_kind_of(a): a for a in options if dataclasses.is_dataclass(a)}
            if value["kind"] in tagged:
                return _convert(tagged[value["kind"]], value, where)
        errors = []
        for a in options:
            try:
                return _convert(a, value, where)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise ValueError(f"{where}: {value!r} matches none of {options}: {errors}")
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is list:
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        return {k: _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Enum):
        return BeamType.of(value) if tp is BeamType else tp(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(fields)}")
        kwargs = {
            k: _convert(hints[k], v, f"{where}.{k}") for k, v in value.items() if fields[k].init
        }
        if "kind" in value and value["kind"] != _kind_of(tp):
            raise ValueError(f"{where}: kind {value['kind']!r} is not {_kind_of(tp)!r}")
        return tp(**kwargs)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise TypeError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    return value


def _kind_of(cls: type) -> str | None:
    f = {f.name: f for f in dataclasses.fields(cls)}.get("kind")
    return f.default if f is not None else None
