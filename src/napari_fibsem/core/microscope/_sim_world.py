"""The simulator's world: synthetic scene objects in world pixels, mapped into each acquisition.

The world is one ``random_layout`` drawn at ``world_pixel_size`` metres per world pixel and
shifted so the lamella centre sits at the world origin (stage 0, 0 looks at the lamella site).
World pixel (a, b) is the sample point X = a * wps, Y = -b * wps (world rows run down, sample
y up). An acquisition maps world pixels to image pixels by the affine map

    col = kx * a + ox,    row = ky * b + oy,    kx = wps / ps,    ky = kx * cos(theta)

(see ``geometry`` for theta and the offsets), and each object is rebuilt at that scale with
``dataclasses.replace`` on its geometry fields. Rectangles map edge to edge and are rounded to
whole pixels, so a rendered object is within half a pixel of its exact position.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace

from napari_fibsem.core.synthetic.layout import random_layout
from napari_fibsem.core.synthetic.objects import _RectObject
from napari_fibsem.core.synthetic.scene import (
    CopperAdaptor,
    Lamella,
    LandingPost,
    Needle,
    Rect,
    SceneConfig,
    SceneObject,
    Speck,
    Substrate,
    Trench,
    VolumeBlock,
)

NEEDLE_EXTENSION = 3.0  # the needle base is moved this many lengths out, so it enters from afar


@dataclass(frozen=True)
class Affine:
    """Image pixel = (kx * a + ox, ky * b + oy) for world pixel (a, b); pixel centres are integers."""

    kx: float
    ox: float
    ky: float
    oy: float

    def point(self, a: float, b: float) -> tuple[float, float]:
        return self.kx * a + self.ox, self.ky * b + self.oy

    def inverse_point(self, col: float, row: float) -> tuple[float, float]:
        return (col - self.ox) / self.kx, (row - self.oy) / self.ky


def build_world(sim) -> tuple[list[SceneObject], Needle | None]:
    """The world layout for a ``SimulatorConfig`` (seeded), lamella centred on the origin."""
    import numpy as np

    h, w = sim.world_size_px
    cfg = SceneConfig(
        size=(h, w), beam="electron", lamella=True, trench=True, needle=sim.needle,
        needle_side=sim.needle_side, landing_post=sim.landing_post, distractors=sim.distractors,
    )
    objects = random_layout(np.random.default_rng(sim.seed), cfg)
    lam = next(o for o in objects if isinstance(o, Lamella))
    cx, cy = (round(v) for v in lam.rect.centre)
    objects = [o.shifted(-cx, -cy) for o in objects]
    needle = next((o for o in objects if isinstance(o, Needle)), None)
    if needle is not None:
        objects.remove(needle)
        (bx, by), (tx, ty), k = needle.base, needle.tip, NEEDLE_EXTENSION
        needle = replace(
            needle,
            base=(tx + k * (bx - tx), ty + k * (by - ty)),
            base_radius=needle.tip_radius + k * (needle.base_radius - needle.tip_radius),
        )
    return objects, needle


def edges_to_rect(c0: float, c1: float, r0: float, r1: float) -> Rect:
    """Inclusive pixel rectangle of the pixel centres inside the continuous span [c0, c1] x
    [r0, r1] (pixel i covers i - 0.5 .. i + 0.5); at least one pixel."""
    x0, y0 = math.ceil(c0), math.ceil(r0)
    return Rect(x0, y0, max(x0, math.floor(c1)), max(y0, math.floor(r1)))


def _map_rect(r: Rect, aff: Affine, shape: tuple[int, int]) -> Rect | None:
    c0, r0 = aff.point(r.x0 - 0.5, r.y0 - 0.5)
    c1, r1 = aff.point(r.x1 + 0.5, r.y1 + 0.5)
    out = edges_to_rect(c0, c1, r0, r1)
    h, w = shape
    m = max(h, w)  # clip far-outside parts (bounded memory when zoomed in), keep the rim off-screen
    if out.x1 < -m or out.y1 < -m or out.x0 > w - 1 + m or out.y0 > h - 1 + m:
        return None
    if out.x1 < 0 or out.y1 < 0 or out.x0 > w - 1 or out.y0 > h - 1:
        return None
    return Rect(max(out.x0, -m), max(out.y0, -m), min(out.x1, w - 1 + m), min(out.y1, h - 1 + m))


def map_object(o: SceneObject, aff: Affine, shape: tuple[int, int]) -> SceneObject | None:
    """``o`` as seen in an image of ``shape`` through ``aff``; None when it is outside."""
    kx, ky = aff.kx, aff.ky
    if isinstance(o, Substrate):
        s = min(shape) / 1024
        ox, oy = o.origin
        return replace(o, origin=(ox * kx - aff.ox, oy * kx - aff.oy), grain=o.grain * kx / s)
    if isinstance(o, Needle):
        rt = max(1.0, o.tip_radius * kx)
        n = replace(o, base=aff.point(*o.base), tip=aff.point(*o.tip), tip_radius=rt,
                    base_radius=max(rt + 1.0, o.base_radius * kx))
        return n if n.bounds().slices(shape) is not None else None
    if isinstance(o, Speck):
        s = replace(o, centre=aff.point(*o.centre), radius=max(0.7, o.radius * kx))
        return s if s.bounds().slices(shape) is not None else None
    if isinstance(o, _RectObject):
        rect = _map_rect(o.rect, aff, shape)
        if rect is None:
            return None
        extra = {
            Trench: lambda: {"wall": max(1, round(o.wall * ky))},
            Lamella: lambda: {"edge": max(1.0, o.edge * ky)},
            CopperAdaptor: lambda: {"grain": max(2.0, o.grain * kx)},
            VolumeBlock: lambda: {"cell": max(3.0, o.cell * kx)},
            LandingPost: dict,
        }[type(o)]()
        return replace(o, rect=rect, **extra)
    raise TypeError(f"the simulator cannot map {type(o).__name__}")


def subtract(o: _RectObject, cut: Rect) -> list[_RectObject]:
    """What is left of a solid rectangle object after milling ``cut`` out of it (0 to 4 pieces)."""
    r = o.rect
    if not r.intersects(cut):
        return [o]
    pieces = []
    if cut.y0 > r.y0:
        pieces.append(Rect(r.x0, r.y0, r.x1, cut.y0 - 1))
    if cut.y1 < r.y1:
        pieces.append(Rect(r.x0, cut.y1 + 1, r.x1, r.y1))
    y0, y1 = max(r.y0, cut.y0), min(r.y1, cut.y1)
    if cut.x0 > r.x0:
        pieces.append(Rect(r.x0, y0, cut.x0 - 1, y1))
    if cut.x1 < r.x1:
        pieces.append(Rect(cut.x1 + 1, y0, r.x1, y1))
    return [dataclasses.replace(o, rect=p) for p in pieces]


def mill(world: list[SceneObject], cut: Rect) -> list[SceneObject]:
    """The world with material removed inside ``cut`` (solid objects trimmed; trenches stay)."""
    out: list[SceneObject] = []
    for o in world:
        if isinstance(o, _RectObject) and not isinstance(o, Trench):
            out.extend(subtract(o, cut))
        else:
            out.append(o)
    return out
