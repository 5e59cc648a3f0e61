"""Object descriptions of a synthetic FIB-SEM scene: geometry in output-image pixels, no pixels.

A layout is a list of these frozen dataclasses. The renderer rasterises any such list, so a
microscope simulator can place, shift (``obj.shifted(dx, dy)``) or drop objects and render them
again. Each object carries a ``seed`` for its texture, which is anchored to the object, so a
shifted object looks the same in the next frame.

Rectangles use inclusive pixel bounds: ``Rect(x0, y0, x1, y1)`` covers columns ``x0..x1`` and
rows ``y0..y1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np

from napari_fibsem.core.io.classes import ClassMap

_CLASSES = ClassMap.default()
BACKGROUND = _CLASSES.id_of("background")
LAMELLA = _CLASSES.id_of("lamella")
MANIPULATOR = _CLASSES.id_of("manipulator")
LANDING_POST = _CLASSES.id_of("landing_post")
COPPER_ADAPTOR = _CLASSES.id_of("copper_adaptor")
VOLUME_BLOCK = _CLASSES.id_of("volume_block")

Slices = tuple[slice, slice]


@dataclass(frozen=True)
class Rect:
    """Axis-aligned pixel rectangle with inclusive bounds."""

    x0: int
    y0: int
    x1: int
    y1: int

    def __post_init__(self) -> None:
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError(f"empty rectangle {self}")

    @property
    def width(self) -> int:
        return self.x1 - self.x0 + 1

    @property
    def height(self) -> int:
        return self.y1 - self.y0 + 1

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)

    def shifted(self, dx: int, dy: int) -> Rect:
        return Rect(self.x0 + dx, self.y0 + dy, self.x1 + dx, self.y1 + dy)

    def grown(self, m: int) -> Rect:
        return Rect(self.x0 - m, self.y0 - m, self.x1 + m, self.y1 + m)

    def intersects(self, other: Rect) -> bool:
        return not (self.x1 < other.x0 or other.x1 < self.x0 or self.y1 < other.y0 or other.y1 < self.y0)

    def slices(self, shape: tuple[int, int]) -> Slices | None:
        """The part of the rectangle inside an image of ``shape``, or None if it is all outside."""
        y0, x0 = max(self.y0, 0), max(self.x0, 0)
        y1, x1 = min(self.y1, shape[0] - 1), min(self.x1, shape[1] - 1)
        if y1 < y0 or x1 < x0:
            return None
        return slice(y0, y1 + 1), slice(x0, x1 + 1)


@dataclass(frozen=True)
class _RectObject:
    """An object whose footprint is exactly its rectangle."""

    rect: Rect
    seed: int
    brightness: float
    class_id: ClassVar[int] = BACKGROUND
    z: ClassVar[int] = 0

    def bounds(self) -> Rect:
        return self.rect

    def footprint(self, shape: tuple[int, int]) -> tuple[Slices, np.ndarray] | None:
        sl = self.rect.slices(shape)
        if sl is None:
            return None
        return sl, np.ones((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start), bool)

    def shifted(self, dx: int, dy: int):
        return replace(self, rect=self.rect.shifted(dx, dy))


@dataclass(frozen=True)
class Substrate:
    """The textured sample surface filling the frame. ``origin`` is the sample coordinate of
    pixel (0, 0); a stage move changes it so the texture moves with the sample."""

    seed: int
    level: float = 0.38
    roughness: float = 1.0
    grain: float = 1.0  # texture scale factor
    origin: tuple[float, float] = (0.0, 0.0)  # (x, y)
    class_id: ClassVar[int] = BACKGROUND
    z: ClassVar[int] = -10

    def shifted(self, dx: float, dy: float) -> Substrate:
        return replace(self, origin=(self.origin[0] - dx, self.origin[1] - dy))


@dataclass(frozen=True)
class Trench(_RectObject):
    """A milled trench (class background): dark smooth floor, textured walls.
    ``wall`` is the height in pixels of the far (top) wall band."""

    wall: int = 4
    z: ClassVar[int] = -5


@dataclass(frozen=True)
class Lamella(_RectObject):
    """Thin slab seen edge-on: dark face, bright rough rim, brightest along the protective cap.
    ``edge`` is the mean rim width (px) along the top edge; the others are narrower."""

    edge: float = 2.0
    face: float = 0.3
    class_id: ClassVar[int] = LAMELLA
    z: ClassVar[int] = 0


@dataclass(frozen=True)
class LandingPost(_RectObject):
    """Bright vertical bar with sharp edges (landing post or grid bar); ``spots`` contamination
    spots lie inside its footprint."""

    spots: int = 0
    class_id: ClassVar[int] = LANDING_POST
    z: ClassVar[int] = 2


@dataclass(frozen=True)
class CopperAdaptor(_RectObject):
    """Bright polycrystalline metal block; ``grain`` is the grain size in pixels."""

    grain: float = 20.0
    class_id: ClassVar[int] = COPPER_ADAPTOR
    z: ClassVar[int] = 2


@dataclass(frozen=True)
class VolumeBlock(_RectObject):
    """Block of bulk sample (cells, membranes) with a bright protective coat on top;
    ``cell`` is the typical cell size in pixels."""

    cell: float = 40.0
    class_id: ClassVar[int] = VOLUME_BLOCK
    z: ClassVar[int] = 1


@dataclass(frozen=True)
class Needle:
    """Manipulator needle: a tapered wedge from ``base`` (outside the frame, beyond ``side``) to
    a rounded ``tip``; the radius goes linearly from ``base_radius`` to ``tip_radius``."""

    base: tuple[float, float]  # (x, y)
    tip: tuple[float, float]
    base_radius: float
    tip_radius: float
    side: Literal["left", "right", "top"]
    seed: int
    brightness: float = 0.8
    class_id: ClassVar[int] = MANIPULATOR
    z: ClassVar[int] = 5

    @property
    def length(self) -> float:
        return math.hypot(self.tip[0] - self.base[0], self.tip[1] - self.base[1])

    def radius_at(self, t: np.ndarray | float) -> np.ndarray | float:
        return self.base_radius + (self.tip_radius - self.base_radius) * t

    def bounds(self) -> Rect:
        (bx, by), (tx, ty) = self.base, self.tip
        rb, rt = self.base_radius, self.tip_radius
        return Rect(
            math.floor(min(bx - rb, tx - rt)),
            math.floor(min(by - rb, ty - rt)),
            math.ceil(max(bx + rb, tx + rt)),
            math.ceil(max(by + rb, ty + rt)),
        )

    def geometry(self, sl: Slices) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Over the window ``sl``: distance to the axis (px; inside where ``dist <= rad``),
        position along the axis ``t`` (0 base, 1 tip), signed offset across it and local radius."""
        (bx, by), (tx, ty) = self.base, self.tip
        length = max(self.length, 1e-6)
        ux, uy = (tx - bx) / length, (ty - by) / length
        y = np.arange(sl[0].start, sl[0].stop, dtype=np.float32)[:, None] - np.float32(by)
        x = np.arange(sl[1].start, sl[1].stop, dtype=np.float32)[None, :] - np.float32(bx)
        along = x * np.float32(ux) + y * np.float32(uy)
        across = y * np.float32(ux) - x * np.float32(uy)
        t = np.clip(along / np.float32(length), 0, 1)
        past = np.maximum(along - np.float32(length), 0)  # beyond the tip: round cap
        dist = np.sqrt(across * across + past * past)
        rad = self.radius_at(t).astype(np.float32)
        return dist, t, across, rad

    def footprint(self, shape: tuple[int, int]) -> tuple[Slices, np.ndarray] | None:
        sl = self.bounds().slices(shape)
        if sl is None:
            return None
        dist, _, _, rad = self.geometry(sl)
        return sl, dist <= rad

    def shifted(self, dx: float, dy: float) -> Needle:
        return replace(
            self,
            base=(self.base[0] + dx, self.base[1] + dy),
            tip=(self.tip[0] + dx, self.tip[1] + dy),
        )


@dataclass(frozen=True)
class Speck:
    """Ice crystal / dust particle: a small bright blob that is *not* labelled (class 0)."""

    centre: tuple[float, float]  # (x, y)
    radius: float
    seed: int
    brightness: float = 0.9
    class_id: ClassVar[int] = BACKGROUND
    z: ClassVar[int] = 8

    def bounds(self) -> Rect:
        r = 2 * self.radius + 2
        x, y = self.centre
        return Rect(math.floor(x - r), math.floor(y - r), math.ceil(x + r), math.ceil(y + r))

    def shifted(self, dx: float, dy: float) -> Speck:
        return replace(self, centre=(self.centre[0] + dx, self.centre[1] + dy))


SceneObject = Substrate | Trench | Lamella | Needle | LandingPost | CopperAdaptor | VolumeBlock | Speck
