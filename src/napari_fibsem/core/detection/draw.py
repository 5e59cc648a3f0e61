"""Draw detected (and optionally true) feature points onto an image, for logs and reports.

Headless (PIL only): the same picture ends up in an evaluation report, a data-engine log or a
run's HTML summary without a viewer.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageDraw

from napari_fibsem.core.detection.detect import DetectedFeatures
from napari_fibsem.core.io.classes import ClassMap


def to_display_uint8(image: np.ndarray) -> np.ndarray:
    """Grayscale of any dtype -> uint8 stretched between the 0.5th and 99.5th percentiles."""
    img = np.asarray(getattr(image, "data", image), dtype=np.float32)
    lo, hi = np.percentile(img, (0.5, 99.5)) if img.size else (0.0, 1.0)
    scale = 255.0 / (hi - lo) if hi > lo else 1.0
    return np.clip((img - lo) * scale, 0, 255).astype(np.uint8)


def draw_features(
    image: np.ndarray,
    detected: DetectedFeatures,
    class_map: ClassMap | None = None,
    mask_alpha: float = 0.3,
    truth: Mapping[str, tuple[float, float]] | None = None,
    labels: bool = True,
) -> np.ndarray:
    """RGB uint8 picture: image, mask overlay, a ringed cross per found feature.

    ``truth`` (feature -> (x, y)) adds hollow squares for the labelled points and a line from
    each to its detection, which is what an evaluation plot needs to show at a glance.
    """
    gray = to_display_uint8(image)
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    if detected.mask is not None and mask_alpha > 0:
        cmap = class_map or ClassMap.default()
        lut = np.zeros((256, 3), np.float32)
        for cid in cmap.ids:
            lut[cid] = np.asarray(cmap[cid].rgb()) * 255
        fg = detected.mask > 0
        rgb[fg] = (1 - mask_alpha) * rgb[fg] + mask_alpha * lut[detected.mask[fg]]
    canvas = Image.fromarray(rgb.astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    r = max(4, round(min(gray.shape) / 80))
    for f in detected:
        if truth is not None and f.name in truth:
            tx, ty = truth[f.name]
            draw.rectangle((tx - r, ty - r, tx + r, ty + r), outline=f.color, width=max(1, r // 3))
            if f.px is not None:
                draw.line((tx, ty, *f.px), fill=f.color, width=1)
        if f.px is None:
            continue
        x, y = f.px
        draw.ellipse((x - r, y - r, x + r, y + r), outline=f.color, width=max(1, r // 3))
        draw.line((x - 2 * r, y, x + 2 * r, y), fill=f.color, width=1)
        draw.line((x, y - 2 * r, x, y + 2 * r), fill=f.color, width=1)
        if labels:
            draw.text((x + r + 2, y - r - 10), f.name, fill=f.color)
    return np.asarray(canvas)
