"""Procedural FIB-SEM scenes: image, AutoLamella class mask, exact keypoints, pixel size.

The project's own data for tests, demos, training benchmarks and the microscope simulator.
A scene is made in two steps so the simulator can reuse the second one:

1. ``random_layout(rng, config)`` draws a list of object descriptions (``Lamella``, ``Needle``,
   ...: frozen dataclasses with geometry in output pixels);
2. ``render(objects, shape, rng, style)`` rasterises any such list into ``(image, mask)``.

``generate_scene(seed, ...)`` does both, derives the keypoints from the final mask (so they are
what a mask-based detector finds) and is bit-for-bit reproducible from its seed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from napari_fibsem.core.synthetic.config import PIXEL_SIZE_RANGE, SceneConfig
from napari_fibsem.core.synthetic.layout import child_rngs, random_layout
from napari_fibsem.core.synthetic.objects import (
    COPPER_ADAPTOR,
    LAMELLA,
    LANDING_POST,
    MANIPULATOR,
    VOLUME_BLOCK,
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
from napari_fibsem.core.synthetic.render import RenderStyle, render

__all__ = [
    "KEYPOINT_FEATURES",
    "PIXEL_SIZE_RANGE",
    "CopperAdaptor",
    "Lamella",
    "LandingPost",
    "Needle",
    "Rect",
    "RenderStyle",
    "SceneConfig",
    "SceneObject",
    "Speck",
    "Substrate",
    "SyntheticScene",
    "Trench",
    "VolumeBlock",
    "generate_scene",
    "keypoints_from_mask",
    "random_layout",
    "random_style",
    "render",
    "render_scene",
]

KEYPOINT_FEATURES: tuple[str, ...] = (
    "ImageCentre",
    "LamellaCentre",
    "LamellaLeftEdge",
    "LamellaRightEdge",
    "LamellaTopEdge",
    "LamellaBottomEdge",
    "NeedleTip",
    "LandingPost",
    "LandingGridCentre",
    "LandingGridLeftEdge",
    "LandingGridRightEdge",
    "CopperAdapterCentre",
    "CopperAdapterTopEdge",
    "CopperAdapterBottomEdge",
    "VolumeBlockCentre",
    "VolumeBlockTopEdge",
    "VolumeBlockBottomEdge",
    "VolumeBlockTopLeftCorner",
    "VolumeBlockTopRightCorner",
    "VolumeBlockBottomLeftCorner",
    "VolumeBlockBottomRightCorner",
)


@dataclass(frozen=True)
class SyntheticScene:
    """One generated frame and its ground truth."""

    image: np.ndarray  # uint8 (H, W)
    mask: np.ndarray  # uint8 (H, W), AutoLamella class ids
    keypoints: dict[str, tuple[float, float]]  # feature -> (x, y) pixels, origin top-left, y down
    pixel_size: float  # metres per pixel
    beam: str  # "electron" | "ion"
    needle_side: str | None  # border the needle enters from; None without a needle
    config: SceneConfig
    objects: tuple[SceneObject, ...] = field(default=(), repr=False)  # the layout that was rendered


def random_style(rng: np.random.Generator, config: SceneConfig) -> RenderStyle:
    """Draw imaging conditions for ``config``: the artefact factors scale typical amplitudes."""
    ion = config.beam == "ion"
    s = min(config.size) / 1024
    ch = config.charging * (0.6 if ion else 1.3)
    return RenderStyle(
        beam=config.beam,
        noise=config.noise,
        dose=float(rng.uniform(25, 80) if ion else rng.uniform(40, 120)),
        read_noise=float(rng.uniform(0.006, 0.02)),
        blur=float(config.blur * rng.uniform(0.5, 1.3) * max(s, 0.3)),
        charging=float(ch * rng.uniform(0.4, 1.2)),
        gradient=(
            float(ch * rng.uniform(-0.06, 0.06)),
            float(ch * rng.uniform(-0.06, 0.06)),
            float(ch * rng.uniform(-0.05, 0.03)),
        ),
        scan_lines=float(ch * rng.uniform(0.0, 0.012)),
        shade=float(rng.uniform(0.6, 1.4)),
        shade_angle=float(rng.uniform(-math.pi, math.pi)),
        curtaining=float(config.curtaining_strength * rng.uniform(0.7, 1.3)),
        channelling=float(rng.uniform(0.7, 1.2) if ion else rng.uniform(0.15, 0.4)),
        contrast=float(rng.uniform(0.85, 1.2)),
        brightness=float(rng.uniform(-0.05, 0.05)),
        gamma=float(rng.uniform(0.85, 1.15)),
    )


def render_scene(
    objects: list[SceneObject], config: SceneConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``objects`` with imaging conditions drawn from ``rng`` for ``config``."""
    style_rng, frame_rng = child_rngs(rng, 2)
    return render(objects, config.size, frame_rng, random_style(style_rng, config))


def generate_scene(seed: int, config: SceneConfig | None = None, **overrides) -> SyntheticScene:
    """A seeded synthetic scene; ``overrides`` replace fields of ``config`` (or the defaults).

    Same seed and config give bit-identical arrays; only ``np.random.default_rng(seed)`` is used.
    """
    config = config or SceneConfig()
    if overrides:
        known = {f.name for f in dataclasses.fields(SceneConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown SceneConfig fields {unknown}; known fields: {sorted(known)}")
        config = dataclasses.replace(config, **overrides)
    rng = np.random.default_rng(seed)
    size_rng, layout_rng, style_rng, frame_rng = child_rngs(rng, 4)
    lo, hi = PIXEL_SIZE_RANGE
    drawn = float(math.exp(size_rng.uniform(math.log(lo), math.log(hi))))
    pixel_size = float(config.pixel_size) if config.pixel_size is not None else drawn
    objects = random_layout(layout_rng, config)
    image, mask = render(objects, config.size, frame_rng, random_style(style_rng, config))
    needle = next((o for o in objects if isinstance(o, Needle)), None)
    side = needle.side if needle is not None else None
    return SyntheticScene(
        image=image,
        mask=mask,
        keypoints=keypoints_from_mask(mask, side),
        pixel_size=pixel_size,
        beam=config.beam,
        needle_side=side,
        config=config,
        objects=tuple(objects),
    )


def _bbox(m: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _centroid(m: np.ndarray) -> tuple[float, float]:
    n = m.sum()
    cy = float(np.arange(m.shape[0]) @ m.sum(axis=1) / n)
    cx = float(np.arange(m.shape[1]) @ m.sum(axis=0) / n)
    return cx, cy


def keypoints_from_mask(mask: np.ndarray, needle_side: str | None = None) -> dict[str, tuple[float, float]]:
    """Keypoints of the objects in a class mask, as a mask-based detector computes them.

    Edges are bounding-box edge midpoints, centres are mask centroids, ``NeedleTip`` is the
    needle pixel furthest from ``needle_side`` (ties averaged), ``LandingPost`` the post pixel
    closest to the image centre (ties averaged). Only objects present in the mask get points.
    """
    h, w = mask.shape
    centre = ((w - 1) / 2, (h - 1) / 2)
    kp: dict[str, tuple[float, float]] = {"ImageCentre": centre}
    m = mask == LAMELLA
    if m.any():
        x0, y0, x1, y1 = _bbox(m)
        xc, yc = (x0 + x1) / 2, (y0 + y1) / 2
        kp["LamellaCentre"] = _centroid(m)
        kp["LamellaLeftEdge"], kp["LamellaRightEdge"] = (x0, yc), (x1, yc)
        kp["LamellaTopEdge"], kp["LamellaBottomEdge"] = (xc, y0), (xc, y1)
    m = mask == MANIPULATOR
    if m.any() and needle_side in ("left", "right", "top"):
        x0, y0, x1, y1 = _bbox(m)
        if needle_side == "top":
            xs = np.flatnonzero(m[y1])
            kp["NeedleTip"] = (float(xs.mean()), float(y1))
        else:
            col = x1 if needle_side == "left" else x0
            ys = np.flatnonzero(m[:, col])
            kp["NeedleTip"] = (float(col), float(ys.mean()))
    m = mask == LANDING_POST
    if m.any():
        x0, y0, x1, y1 = _bbox(m)
        ys, xs = np.nonzero(m[y0 : y1 + 1, x0 : x1 + 1])
        ys, xs = ys + y0, xs + x0
        d2 = (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2
        near = d2 == d2.min()
        kp["LandingPost"] = (float(xs[near].mean()), float(ys[near].mean()))
        yc = (y0 + y1) / 2
        kp["LandingGridCentre"] = _centroid(m)
        kp["LandingGridLeftEdge"], kp["LandingGridRightEdge"] = (x0, yc), (x1, yc)
    m = mask == COPPER_ADAPTOR
    if m.any():
        x0, y0, x1, y1 = _bbox(m)
        xc = (x0 + x1) / 2
        kp["CopperAdapterCentre"] = _centroid(m)
        kp["CopperAdapterTopEdge"], kp["CopperAdapterBottomEdge"] = (xc, y0), (xc, y1)
    m = mask == VOLUME_BLOCK
    if m.any():
        x0, y0, x1, y1 = _bbox(m)
        xc = (x0 + x1) / 2
        kp["VolumeBlockCentre"] = _centroid(m)
        kp["VolumeBlockTopEdge"], kp["VolumeBlockBottomEdge"] = (xc, y0), (xc, y1)
        kp["VolumeBlockTopLeftCorner"], kp["VolumeBlockTopRightCorner"] = (x0, y0), (x1, y0)
        kp["VolumeBlockBottomLeftCorner"], kp["VolumeBlockBottomRightCorner"] = (x0, y1), (x1, y1)
    return {k: (float(v[0]), float(v[1])) for k, v in kp.items()}
