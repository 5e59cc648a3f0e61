"""Per-system microscope configuration (YAML, validated by pydantic).

One YAML file describes one instrument: manufacturer (which selects the adapter), address,
shuttle pre-tilt, column tilts, stage limits, the largest move allowed without confirmation,
beam defaults and the system-info fingerprint recorded in every image's metadata. Unknown
keys are errors (a misspelt limit must not silently fall back to a default). Angles are given
in degrees in the file (keys end in ``_deg``); everything else is SI with the unit in the key.

The manufacturer must be one the adapter registry (``registry.ADAPTERS``) knows; building and
connecting the adapter is ``connection.connect``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from napari_fibsem.core.errors import ConfigError  # re-exported: the one configuration error
from napari_fibsem.core.io.atomic import atomic_write_text
from napari_fibsem.core.microscope.registry import ADAPTERS, SIMULATOR
from napari_fibsem.core.microscope.registry import adapter_key as _key


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Range = tuple[float, float]


class StageLimits(_Model):
    """Allowed stage range per axis, ``[min, max]``; a move outside is refused."""

    x_m: Range = (-10e-3, 10e-3)
    y_m: Range = (-10e-3, 10e-3)
    z_m: Range = (-5e-3, 5e-3)
    tilt_deg: Range = (-15.0, 65.0)

    @field_validator("x_m", "y_m", "z_m", "tilt_deg")
    @classmethod
    def _ordered(cls, v: Range) -> Range:
        if not v[0] < v[1]:
            raise ValueError(f"limits must be [min, max] with min < max, got {list(v)}")
        return v


FIB_CURRENTS_A: tuple[float, ...] = (
    1e-12, 10e-12, 30e-12, 50e-12, 100e-12, 300e-12, 500e-12, 1e-9, 3e-9, 5e-9, 9e-9, 15e-9, 30e-9, 65e-9,
)  # fmt: skip
"""Typical 30 kV gallium FIB aperture currents (A), the ion beam's presets unless configured."""


class BeamDefaults(_Model):
    voltage_v: float = Field(gt=0)
    current_a: float = Field(gt=0)
    hfw_m: float = Field(default=80e-6, gt=0)
    working_distance_m: float = Field(default=4e-3, gt=0)
    dwell_time_s: float = Field(default=1e-6, gt=0)
    resolution: tuple[int, int] = (1536, 1024)  # (width, height)
    currents_a: tuple[float, ...] = ()  # the column's preset currents (its apertures); () = not listed

    @field_validator("currents_a")
    @classmethod
    def _presets(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not c > 0 for c in v):
            raise ValueError(f"preset currents must be positive, got {list(v)}")
        return tuple(sorted(set(v)))


class Beams(_Model):
    electron: BeamDefaults = BeamDefaults(voltage_v=2e3, current_a=50e-12)
    ion: BeamDefaults = BeamDefaults(voltage_v=30e3, current_a=300e-12, currents_a=FIB_CURRENTS_A)


class ColumnTilts(_Model):
    """Column tilt from the stage normal at zero tilt, per beam (degrees)."""

    electron: float = 0.0
    ion: float = 52.0


class SystemInfo(_Model):
    """What identifies the instrument and its software; recorded in every image's metadata."""

    model: str = "unknown"
    serial_number: str = "unknown"
    software_version: str = "unknown"
    sdk_version: str = "unknown"
    notes: dict[str, str] = {}


class Delays(_Model):
    """Simulated durations in seconds (0 in tests)."""

    acquire_s: float = Field(default=0.0, ge=0)
    move_s: float = Field(default=0.0, ge=0)
    milling_step_s: float = Field(default=0.0, ge=0)
    gis_heat_s: float = Field(default=0.0, ge=0)  # a GIS heater reaches its setpoint after this


class FaultSpec(_Model):
    """An injected fault: the ``after``-th matching call from now fails, ``count`` times."""

    kind: Literal["acquisition", "stage_timeout", "connection_loss", "gis_open", "gis_close"]
    after: int = Field(default=0, ge=0)
    count: int = Field(default=1, ge=1)


class SimulatorConfig(_Model):
    """The simulated world and its behaviour; everything follows from ``seed``."""

    seed: int = 0
    world_pixel_size_m: float = Field(default=30e-9, gt=0)
    world_size_px: tuple[int, int] = (1024, 1536)  # (height, width) of the generated layout
    needle: bool = True
    needle_side: Literal["left", "right", "top", "random"] = "left"
    landing_post: bool = False
    distractors: int = Field(default=4, ge=0)
    noise: float = Field(default=1.0, ge=0)
    milling_steps: int = Field(default=10, ge=1)  # steps per pattern (stop is checked between)
    gas_ports: list[str] = ["Pt dep", "C dep"]  # GIS ports
    sputter_coater: bool = True
    cryo: bool = False  # a cryo stage: the chamber reports -180 °C (93.15 K)
    delays: Delays = Delays()
    faults: list[FaultSpec] = []


class MicroscopeConfig(_Model):
    """One instrument. ``manufacturer: Demo`` (or ``simulator``) selects the simulator."""

    name: str = "simulator"
    manufacturer: str = "Demo"
    ip_address: str = "localhost"
    pre_tilt_deg: float = 0.0  # shuttle pre-tilt
    reference_rotation_deg: float = 0.0  # stage rotation at which the pre-tilt faces the ion column
    column_tilt_deg: ColumnTilts = ColumnTilts()
    stage_limits: StageLimits = StageLimits()
    max_step_m: float = Field(default=200e-6, gt=0)  # larger moves need confirm=True
    max_beam_shift_m: float = Field(default=20e-6, gt=0)
    beams: Beams = Beams()
    system: SystemInfo = SystemInfo()
    simulator: SimulatorConfig | None = None
    event_log: str | None = None  # JSON-lines file of every operation

    @field_validator("manufacturer")
    @classmethod
    def _known(cls, v: str) -> str:
        if _key(v) not in ADAPTERS:
            raise ValueError(f"unknown manufacturer {v!r}; known: {sorted(ADAPTERS)}")
        return v

    @model_validator(mode="after")
    def _sim_only(self) -> MicroscopeConfig:
        if self.simulator is not None and not self.is_simulator:
            raise ValueError(f"the 'simulator' section is only for manufacturer Demo, not {self.manufacturer!r}")
        return self

    @property
    def is_simulator(self) -> bool:
        return ADAPTERS[_key(self.manufacturer)] == SIMULATOR

    @property
    def pre_tilt(self) -> float:
        return math.radians(self.pre_tilt_deg)

    @property
    def reference_rotation(self) -> float:
        return math.radians(self.reference_rotation_deg)

    def preset_currents(self, beam: str) -> tuple[float, ...]:
        """The beam's preset currents (A), ascending; the ion beam falls back to :data:`FIB_CURRENTS_A`
        when a file lists none (milling currents are chosen from these, as on the instrument)."""
        name = str(getattr(beam, "value", beam))
        listed = getattr(self.beams, name).currents_a
        return listed or (FIB_CURRENTS_A if name == "ion" else ())

    def column_tilt(self, beam: str) -> float:
        return math.radians(getattr(self.column_tilt_deg, str(getattr(beam, "value", beam))))

    def system_info(self) -> dict[str, Any]:
        """Manufacturer, instrument and software versions, and their fingerprint (sha1)."""
        from napari_fibsem import __version__

        info = {"manufacturer": self.manufacturer, "name": self.name, **self.system.model_dump(), "napari_fibsem": __version__}
        info["fingerprint"] = hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:16]
        return info


def _format(e: ValidationError, source: str) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any] | None, source: str = "config") -> MicroscopeConfig:
    """Validate a mapping; errors raise :class:`ConfigError` naming ``source`` and each bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return MicroscopeConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format(e, source)) from None


def load_config(path: str | Path) -> MicroscopeConfig:
    """Read and validate a system YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    return parse_config(data, str(path))


def save_config(config: MicroscopeConfig, path: str | Path) -> Path:
    """Write ``config`` as YAML, atomically."""
    path = Path(path)
    atomic_write_text(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return path
