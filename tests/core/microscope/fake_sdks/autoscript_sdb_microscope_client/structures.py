"""The AutoScript structures the adapter builds or reads (plain records)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Point:
    x: float = 0.0
    y: float = 0.0


@dataclass
class GrabFrameSettings:
    resolution: str = "1536x1024"
    dwell_time: float = 1e-6


@dataclass
class StagePosition:
    x: float | None = None
    y: float | None = None
    z: float | None = None
    r: float | None = None
    t: float | None = None
    coordinate_system: str | None = None


@dataclass
class MoveSettings:
    rotate_compucentric: bool = False
    link_z_y: bool = False


@dataclass
class ManipulatorPosition:
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


@dataclass
class AdornedImage:
    data: Any
    metadata: Any
