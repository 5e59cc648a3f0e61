"""Rasterise synthetic scene objects into a FIB-SEM-like uint8 image and its class mask.

The image is built as a float "signal" in ~[0, 1]: materials (textures anchored to each object),
then the imaging physics a U-Net has to see through: SEM edge brightening and detector shading,
charging halos and brightness gradients, vertical curtaining (ion beam), defocus blur, Poisson
shot noise plus Gaussian read noise. The mask is the exact union of the object footprints; blur
and noise touch only the image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_fibsem.core.synthetic.objects import (
    CopperAdaptor,
    Lamella,
    LandingPost,
    Needle,
    Rect,
    SceneObject,
    Speck,
    Substrate,
    Trench,
    VolumeBlock,
)
from napari_fibsem.core.synthetic.texture import fbm, fbm1d, upsample, voronoi_grains


@dataclass(frozen=True)
class RenderStyle:
    """How the microscope images the scene (not what is in it). Lengths are in output pixels."""

    beam: str = "ion"
    noise: float = 1.0  # 0: no shot/read noise
    dose: float = 30.0  # detected electrons per pixel at full signal (shot-noise level)
    read_noise: float = 0.012
    blur: float = 0.7  # defocus Gaussian sigma
    charging: float = 1.0  # halo and gradient amplitude
    gradient: tuple[float, float, float] = (0.0, 0.0, 0.0)  # x slope, y slope, centre-to-corner
    scan_lines: float = 0.0  # row-to-row brightness jitter from charging
    shade: float = 1.0  # detector shadowing strength (topography contrast)
    shade_angle: float = 0.0  # detector direction, radians (0: from the right)
    curtaining: float = 0.0  # vertical stripe amplitude (ion milling), 0: none
    channelling: float = 1.0  # grain contrast of metals (strong with ions)
    contrast: float = 1.0
    brightness: float = 0.0
    gamma: float = 1.0


class _Canvas:
    """Working buffers shared by the painters."""

    def __init__(self, shape: tuple[int, int], style: RenderStyle) -> None:
        self.shape = shape
        self.style = style
        self.s = min(shape) / 1024.0  # length scale relative to a 1024-pixel frame
        self.sig = np.full(shape, 0.38, np.float32)
        self.mask = np.zeros(shape, np.uint8)
        self.height = np.zeros(shape, np.float32)  # topography for shading
        self.milled: list[Rect] = []  # surfaces that show curtaining


def _px(canvas: _Canvas, n: float) -> float:
    """``n`` pixels of a 1024-pixel frame, in pixels of this one (never below 1)."""
    return max(1.0, n * canvas.s)


def _rim(h: int, w: int, width: float) -> np.ndarray:
    """exp(-distance to the rectangle border / width) over an h x w rectangle."""
    dy = np.minimum(np.arange(h), np.arange(h)[::-1]).astype(np.float32)
    dx = np.minimum(np.arange(w), np.arange(w)[::-1]).astype(np.float32)
    return np.exp(-np.minimum.outer(dy, dx) / np.float32(width))


def _local(obj_rect: Rect, sl: tuple[slice, slice]) -> tuple[tuple[int, int], tuple[float, float]]:
    """Shape of a clipped window and its origin in object coordinates (texture anchoring)."""
    shape = (sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
    return shape, (float(sl[0].start - obj_rect.y0), float(sl[1].start - obj_rect.x0))


def _paint_substrate(o: Substrate, c: _Canvas) -> None:
    origin = (o.origin[1], o.origin[0])
    big = fbm(c.shape, _px(c, 220 * o.grain), o.seed, origin, octaves=6, gain=0.55)
    fine = fbm(c.shape, _px(c, 14 * o.grain), o.seed + 1, origin, octaves=2)
    # uneven coating: soft-edged patches of a slightly different yield
    patches = np.clip(fbm(c.shape, _px(c, 120 * o.grain), o.seed + 2, origin, octaves=3) * 4 - 1, 0, 1)
    c.sig[:] = o.level + (0.05 * o.roughness) * big + (0.03 * o.roughness) * fine + 0.05 * patches


def _paint_trench(o: Trench, c: _Canvas) -> None:
    r, sl = o.rect, o.rect.slices(c.shape)
    if sl is None:
        return
    (h, w), org = _local(r, sl)
    y = (np.arange(h, dtype=np.float32) + org[0])[:, None]
    x = (np.arange(w, dtype=np.float32) + org[1])[None, :]
    mid = 1 - np.abs(2 * y / max(r.height - 1, 1) - 1)  # redeposition brightens the middle
    floor = o.brightness + 0.05 * mid**2 + 0.015 * fbm((h, w), _px(c, 50), o.seed, org)
    streaks = fbm((h, w), (max(2.0, 2.0 * o.wall), _px(c, 5)), o.seed + 1, org, octaves=3)
    rim = o.brightness + 0.42
    top = np.clip(y / o.wall, 0, 1)  # far wall: bright rim fading into the floor
    side_w = max(1.0, o.wall / 4)
    side = np.clip(np.minimum(x, r.width - 1 - x) / side_w, 0, 1)
    bottom = np.clip((r.height - 1 - y) / _px(c, 2), 0, 1)
    wall = np.minimum(np.minimum(top, side), bottom) ** 0.7
    val = floor * wall + (rim + 0.09 * streaks) * (1 - wall)
    c.sig[sl] = val
    c.height[sl] = -1.0
    c.milled.append(r)


def _paint_lamella(o: Lamella, c: _Canvas) -> None:
    r, sl = o.rect, o.rect.slices(c.shape)
    if sl is None:
        return
    (h, w), org = _local(r, sl)
    y = (np.arange(h, dtype=np.float32) + org[0])[:, None]
    x = (np.arange(w, dtype=np.float32) + org[1])[None, :]
    face = o.face + 0.05 * (y / r.height - 0.5) + 0.03 * fbm((h, w), (r.height, _px(c, 30)), o.seed, org)

    def edge(n: int, k: int, origin: float) -> np.ndarray:  # slightly rough rim width profile
        return (
            1
            + 0.3 * fbm1d(n, _px(c, 40), o.seed + k, origin)
            + 0.15 * fbm1d(n, _px(c, 5), o.seed + 9 + k, origin)
        )

    thin = max(0.55 * o.edge, 1.2)  # the other rims are narrower than the cap, but never vanish
    top = max(o.edge, 1.5) * edge(w, 1, org[1])[None, :]
    bottom = thin * edge(w, 2, org[1])[None, :]
    left = thin * edge(h, 3, org[0])[:, None]
    right = thin * edge(h, 4, org[0])[:, None]
    w_top = np.clip(top - y + 0.5, 0, 1)
    w_rest = np.clip(
        np.maximum(np.maximum(bottom - (r.height - 1 - y), left - x), right - (r.width - 1 - x)) + 0.5, 0, 1
    )
    grain = 0.05 * fbm((h, w), _px(c, 5), o.seed + 5, org, octaves=2)
    val = face
    val = val + (0.85 * o.brightness + grain - val) * w_rest
    val = val + (o.brightness + grain - val) * w_top
    c.sig[sl] = val
    c.mask[sl] = o.class_id
    c.height[sl] = 0.0
    c.milled.append(r)


def _paint_needle(o: Needle, c: _Canvas) -> None:
    sl = o.bounds().slices(c.shape)
    if sl is None:
        return
    dist, t, across, rad = o.geometry(sl)
    inside = dist <= rad
    u = np.clip(across / rad, -1, 1)
    z = np.sqrt(1 - u * u)
    light = math.cos(c.style.shade_angle)
    b = o.brightness
    val = b * (0.74 + 0.16 * light * u) + 0.28 * b * (1 - z) ** 2 + 0.08 * (t - 0.6)
    # machining streaks along the axis, anchored to the needle
    n = int(math.ceil(2 * o.base_radius)) + 3
    prof = fbm1d(n, _px(c, 5), o.seed, 0.0)
    val = val + 0.035 * np.interp(across + o.base_radius + 1, np.arange(n), prof).astype(np.float32)
    alpha = np.clip(rad - dist + 0.5, 0, 1)  # antialiased outline in the image only
    win = c.sig[sl]
    win += (val - win) * alpha
    c.mask[sl][inside] = o.class_id
    c.height[sl] = np.where(inside, 1.0, c.height[sl])


def _paint_post(o: LandingPost, c: _Canvas) -> None:
    r, sl = o.rect, o.rect.slices(c.shape)
    if sl is None:
        return
    (h, w), org = _local(r, sl)
    y = (np.arange(h, dtype=np.float32) + org[0])[:, None]
    val = (
        o.brightness
        - 0.08 * y / max(c.shape[0], 1)
        + 0.03 * fbm((h, w), (_px(c, 200), _px(c, 4)), o.seed, org)
    )
    if r.y0 > 0:  # the flat top face of a post catches more signal
        val = val + 0.07 * (y < _px(c, 14))
    win = (slice(sl[0].start - r.y0, sl[0].stop - r.y0), slice(sl[1].start - r.x0, sl[1].stop - r.x0))
    val = (
        val + 0.1 * _rim(r.height, r.width, _px(c, 1.2))[win] + 0.06 * _rim(r.height, r.width, _px(c, 6))[win]
    )
    rng = np.random.default_rng(o.seed)
    xx = (np.arange(w, dtype=np.float32) + org[1])[None, :]
    for _ in range(o.spots):
        cx, cy = rng.uniform(0.15, 0.85) * r.width, rng.uniform(0.05, 0.95) * r.height
        rad = rng.uniform(0.02, 0.08) * r.width + 0.7
        spot = np.clip(rad - np.sqrt((xx - cx) ** 2 + (y - cy) ** 2) + 0.5, 0, 1)
        val = val + (rng.choice([0.22, 0.97]) - val) * spot
    c.sig[sl] = val
    c.mask[sl] = o.class_id
    c.height[sl] = 1.0


def _paint_copper(o: CopperAdaptor, c: _Canvas) -> None:
    r, sl = o.rect, o.rect.slices(c.shape)
    if sl is None:
        return
    (h, w), org = _local(r, sl)
    grains, edge = voronoi_grains((h, w), o.grain, o.seed, org)
    val = o.brightness + 0.22 * c.style.channelling * grains - 0.08 * np.exp(-edge / _px(c, 1.2))
    val = val + 0.02 * fbm((h, w), _px(c, 8), o.seed + 1, org, octaves=2)
    rim = _rim(r.height, r.width, _px(c, 2))
    val = val + 0.15 * rim[sl[0].start - r.y0 : sl[0].stop - r.y0, sl[1].start - r.x0 : sl[1].stop - r.x0]
    c.sig[sl] = val
    c.mask[sl] = o.class_id
    c.height[sl] = 1.0


def _paint_volume(o: VolumeBlock, c: _Canvas) -> None:
    r, sl = o.rect, o.rect.slices(c.shape)
    if sl is None:
        return
    (h, w), org = _local(r, sl)
    y = (np.arange(h, dtype=np.float32) + org[0])[:, None]
    n1 = fbm((h, w), o.cell, o.seed, org, octaves=3)
    n2 = fbm((h, w), 0.45 * o.cell, o.seed + 1, org, octaves=2)
    membranes = np.exp(-((n1 / 0.06) ** 2))
    organelles = np.clip((n2 - 0.35) * 4, 0, 1)
    val = o.brightness - 0.16 * membranes - 0.12 * organelles
    val = val + 0.03 * fbm((h, w), _px(c, 6), o.seed + 2, org, octaves=2)
    coat = max(1.0, 0.07 * r.height) * (1 + 0.4 * fbm1d(w, _px(c, 10), o.seed + 3, org[1]))[None, :]
    w_coat = np.clip(coat - y + 0.5, 0, 1)
    val = val + (0.86 - val) * w_coat
    rim = _rim(r.height, r.width, _px(c, 2.5))
    val = val + 0.12 * rim[sl[0].start - r.y0 : sl[0].stop - r.y0, sl[1].start - r.x0 : sl[1].stop - r.x0]
    c.sig[sl] = val
    c.mask[sl] = o.class_id
    c.height[sl] = 0.6
    c.milled.append(r)


def _paint_speck(o: Speck, c: _Canvas) -> None:
    sl = o.bounds().slices(c.shape)
    if sl is None:
        return
    y = np.arange(sl[0].start, sl[0].stop, dtype=np.float32)[:, None] - np.float32(o.centre[1])
    x = np.arange(sl[1].start, sl[1].stop, dtype=np.float32)[None, :] - np.float32(o.centre[0])
    rng = np.random.default_rng(o.seed)
    k, phase = int(rng.integers(1, 4)), rng.uniform(0, 2 * math.pi)
    rad = o.radius * (1 + 0.18 * np.sin(k * np.arctan2(y, x) + phase))
    d = np.sqrt(x * x + y * y)
    core = np.clip(rad - d + 0.5, 0, 1)
    shadow = 0.12 * np.exp(-(((x + 0.8 * o.radius) ** 2 + (y - 0.8 * o.radius) ** 2) / (1.2 * o.radius) ** 2))
    win = c.sig[sl]
    win -= shadow * (1 - core)
    win += (o.brightness - win) * core
    c.height[sl] += 0.5 * core


_PAINTERS = {
    Substrate: _paint_substrate,
    Trench: _paint_trench,
    Lamella: _paint_lamella,
    Needle: _paint_needle,
    LandingPost: _paint_post,
    CopperAdaptor: _paint_copper,
    VolumeBlock: _paint_volume,
    Speck: _paint_speck,
}


def render(
    objects: Iterable[SceneObject], shape: tuple[int, int], rng: np.random.Generator, style: RenderStyle
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise ``objects`` into ``(image uint8, mask uint8)`` of ``shape`` (height, width).

    Objects are drawn back to front by their ``z``; later footprints overwrite earlier ones in
    the mask. ``rng`` supplies only per-frame randomness (noise, scan jitter): rendering the same
    objects twice with different generators gives two acquisitions of the same sample.
    """
    shape = (int(shape[0]), int(shape[1]))
    c = _Canvas(shape, style)
    for obj in sorted(objects, key=lambda o: o.z):
        try:
            painter = _PAINTERS[type(obj)]
        except KeyError:
            known = [t.__name__ for t in _PAINTERS]
            raise TypeError(f"cannot render {type(obj).__name__}; known objects: {known}") from None
        painter(obj, c)
    scan_rng, noise_rng = (np.random.default_rng(int(s)) for s in rng.integers(0, 2**63 - 1, size=2))
    sig = c.sig
    _topography_and_charging(c)
    _curtaining(c, objects)
    h, w = shape
    g = style.gradient
    yy = np.linspace(-1, 1, h, dtype=np.float32)
    xx = np.linspace(-1, 1, w, dtype=np.float32)
    sig += (g[1] * yy + g[2] * yy * yy)[:, None] + (g[0] * xx + g[2] * xx * xx)[None, :]
    if style.scan_lines > 0:
        rows = ndi.gaussian_filter1d(scan_rng.standard_normal(h).astype(np.float32), 1.0)
        sig += (style.scan_lines * rows)[:, None]
    if style.blur > 0.2:
        sig = ndi.gaussian_filter(sig, style.blur, truncate=3.0)
    sig = (sig - 0.45) * style.contrast + 0.45 + style.brightness
    np.clip(sig, 0, 1, out=sig)
    if style.gamma != 1.0:
        sig **= np.float32(style.gamma)
    if style.noise > 0:
        dose = style.dose / style.noise**2
        sig = noise_rng.poisson(sig * dose).astype(np.float32) / np.float32(dose)
        sig += noise_rng.standard_normal(shape, dtype=np.float32) * np.float32(style.read_noise * style.noise)
    image = np.clip(sig * 255 + 0.5, 0, 255).astype(np.uint8)
    return image, c.mask


def _topography_and_charging(c: _Canvas) -> None:
    """Detector shadowing at height steps, and charging glow around bright, raised objects.
    Both are smooth, so they are computed on a grid reduced ~4x (at 1024 px)."""
    st = c.style
    f = max(1, round(4 * c.s))
    low_h = c.height[::f, ::f]
    topo = ndi.gaussian_filter(low_h, max(0.7, 2.5 * c.s / f))
    gy, gx = np.gradient(topo)
    shade = st.shade * 0.35 * (gx * math.cos(st.shade_angle) + gy * math.sin(st.shade_angle))
    steep = np.hypot(gx, gy)
    bright = np.clip(c.sig[::f, ::f] - 0.55, 0, None) + 0.3 * np.clip(low_h, 0, None)
    glow = ndi.gaussian_filter(bright + 0.5 * steep, max(1.0, 70 * c.s / f))
    add = st.charging * 0.18 * glow + 0.04 * steep
    c.sig *= 1 + upsample(shade, f, c.shape)
    c.sig += upsample(add, f, c.shape)


def _curtaining(c: _Canvas, objects: Iterable[SceneObject]) -> None:
    """Vertical stripes from ion milling: strong on milled faces, faint elsewhere; anchored to
    the sample so they move with it."""
    amp = c.style.curtaining
    if amp <= 0:
        return
    h, w = c.shape
    sub = next((o for o in objects if isinstance(o, Substrate)), None)
    seed = sub.seed + 11 if sub else 11
    ox, oy = sub.origin if sub else (0.0, 0.0)
    prof = 0.75 * fbm1d(w, _px(c, 4), seed, ox, octaves=2) + 0.25 * fbm1d(w, _px(c, 16), seed + 1, ox)
    env = np.clip(0.45 + fbm(c.shape, (_px(c, 260), _px(c, 10)), seed + 2, (oy, ox), octaves=2), 0, 1)
    stripes = (0.07 * amp) * env * prof[None, :]
    c.sig += 0.3 * stripes
    for r in c.milled:
        sl = r.slices(c.shape)
        if sl is not None:
            c.sig[sl] += 0.9 * stripes[sl]
