"""Plain data of the microscope layer: frozen dataclasses and enums, SI units throughout.

Lengths are metres, angles radians, times seconds, currents amperes, voltages volts (the
config YAML is the one place that takes degrees, and says so in its key names). Image-plane
coordinates are metres from the image centre with +x right and +y **up** (microscope
convention); pixel coordinates elsewhere in the project are y down.

Serialisation is pydantic's, driven by the type hints, so YAML/JSON round trips need no
per-class code: :func:`to_dict` gives plain data (enum values, tuples as lists, a ``kind`` tag
on patterns) and :func:`from_dict` rebuilds any of these classes (or a hint such as
``list[Pattern]``), refusing unknown keys and naming the field in every error.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal, NoReturn, TypeVar, Union

import pydantic
import pydantic_core

T = TypeVar("T")


class BeamType(str, Enum):
    """Which column: the SEM (electron) or the FIB (ion)."""

    ELECTRON = "electron"
    ION = "ion"

    @classmethod
    def _missing_(cls, value: object) -> BeamType | None:
        """OpenFIBSEM's ``"ELECTRON"``/``"ION_BEAM"`` too (``BeamType(...)`` and pydantic both ask here)."""
        return cls._value2member_map_.get(str(value).strip().lower().removesuffix("_beam"))  # type: ignore[return-value]

    @classmethod
    def of(cls, value: BeamType | str) -> BeamType:
        """Accept ``BeamType``, ``"electron"``/``"ion"`` or OpenFIBSEM's ``"ELECTRON"``/``"ION_BEAM"``."""
        try:
            return cls(value)
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
    kind: Literal["rectangle"] = field(default="rectangle", kw_only=True)  # the tag saved files carry

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
    kind: Literal["line"] = field(default="line", kw_only=True)  # the tag saved files carry

    @property
    def area(self) -> float:
        return math.hypot(self.end_x - self.start_x, self.end_y - self.start_y) * self.width


@dataclass(frozen=True)
class CirclePattern:
    centre_x: float
    centre_y: float
    radius: float
    depth: float
    kind: Literal["circle"] = field(default="circle", kw_only=True)  # the tag saved files carry

    @property
    def area(self) -> float:
        return math.pi * self.radius**2


@dataclass(frozen=True)
class PolygonPattern:
    vertices: tuple[tuple[float, float], ...]
    depth: float
    kind: Literal["polygon"] = field(default="polygon", kw_only=True)  # the tag saved files carry

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
    """JSON/YAML-ready plain data of any structure here (enums as values, tuples as lists).

    Numpy scalars become Python numbers; an object pydantic cannot serialise becomes its ``repr``.
    """
    return pydantic_core.to_jsonable_python(obj, inf_nan_mode="constants", fallback=_fallback)


def _fallback(obj: Any) -> Any:
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return obj.item()
    return repr(obj)


def from_dict(cls: type[T], data: Any) -> T:
    """Rebuild ``cls`` (a dataclass here, or a type hint such as ``list[Pattern]``) from plain data.

    Unknown keys raise a ``ValueError`` naming them and a wrong type a ``TypeError`` naming the
    field (``StagePosition.x: expected a number``), so a typo in a saved state is not ignored.
    """
    name = cls.__name__ if isinstance(cls, type) else str(cls)
    try:
        return _adapter(cls).model_validate_json(json.dumps({"value": to_dict(data)})).value  # type: ignore[attr-defined]
    except pydantic.ValidationError as e:
        _raise_readable(e, name, data)


_ADAPTERS: dict[Any, type[pydantic.BaseModel]] = {}


def _adapter(cls: Any) -> type[pydantic.BaseModel]:
    """A one-field model around ``cls``: its config forbids unknown keys in every nested dataclass."""
    if cls not in _ADAPTERS:
        config = pydantic.ConfigDict(extra="forbid", strict=True)
        _ADAPTERS[cls] = pydantic.create_model("Data", __config__=config, value=(cls, ...))
    return _ADAPTERS[cls]


_TYPE_WORDS = {"float": "a number", "int": "an integer", "bool": "bool", "string": "str"}


def _raise_readable(error: pydantic.ValidationError, name: str, data: Any) -> NoReturn:
    """Turn pydantic's first relevant error into ``Class.field[i]: what is wrong``."""
    errors = [e for e in error.errors(include_url=False) if _on_tagged_branch(e["loc"][1:], data)]
    errors = errors or error.errors(include_url=False)
    unknown = [e for e in errors if e["type"] in ("unexpected_keyword_argument", "extra_forbidden")]
    first = unknown[0] if unknown else errors[0]
    where = name + "".join(_step(part) for part in first["loc"][1:-1] if not _is_branch(part))
    last = first["loc"][-1] if len(first["loc"]) > 1 else None
    if unknown:
        keys = sorted(str(e["loc"][-1]) for e in unknown if e["loc"][:-1] == first["loc"][:-1])
        raise ValueError(f"{where}: unknown keys {keys}") from None
    where += _step(last) if last is not None and not _is_branch(last) else ""
    kind = first["type"].split("_")[0]
    if first["type"].endswith(("_type", "_parsing")) and kind in _TYPE_WORDS:
        raise TypeError(f"{where}: expected {_TYPE_WORDS[kind]}, got {first['input']!r}") from None
    raise ValueError(f"{where}: {first['msg']} (got {first['input']!r})") from None


def _step(part: str | int) -> str:
    return f"[{part}]" if isinstance(part, int) else f".{part}"


def _is_branch(part: str | int) -> bool:
    """pydantic names a union's member (``RectanglePattern``) in the error path; fields are lower case."""
    return isinstance(part, str) and not part[:1].islower()


def _on_tagged_branch(loc: tuple[str | int, ...], data: Any) -> bool:
    """False for an error from a union member other than the one the data's ``kind`` names."""
    for part in loc:
        if _is_branch(part) and isinstance(data, dict) and "kind" in data:
            cls = globals().get(str(part))
            return cls is None or getattr(cls, "kind", None) == data["kind"]
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, (list, tuple)) and isinstance(part, int) and part < len(data):
            data = data[part]
    return True
