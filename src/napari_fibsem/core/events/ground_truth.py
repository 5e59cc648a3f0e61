"""Gaussian ground-truth maps for annotated event points.

Each point becomes a Gaussian peak of height 1 and width ``sigma`` (in pixels of the stack) in its
frame (and channel, when the annotation names one); overlapping peaks combine by maximum, so two
close events stay two peaks of height 1 instead of one taller blob. Each peak is computed only in
a window of +-4 sigma around it, so a long movie with many points stays cheap.
"""

from __future__ import annotations

import math

import numpy as np

from napari_fibsem.core.events.points import EventPoint


def gaussian_maps(
    shape: tuple[int, ...], points: list[EventPoint], sigma: float, truncate: float = 4.0
) -> np.ndarray:
    """float32 maps in [0, 1] of ``shape`` = (T, Y, X) or (T, C, Y, X).

    Points without a channel go to every channel of a (T, C, Y, X) stack.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be a positive number of pixels, got {sigma}")
    if len(shape) not in (3, 4):
        raise ValueError(f"expected a (T, Y, X) or (T, C, Y, X) shape, got {shape}")
    out = np.zeros(shape, np.float32)
    h, w = shape[-2], shape[-1]
    r = max(1, math.ceil(truncate * sigma))
    for p in points:
        y0, y1 = max(0, math.floor(p.y) - r), min(h, math.floor(p.y) + r + 2)
        x0, x1 = max(0, math.floor(p.x) - r), min(w, math.floor(p.x) + r + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        gy = np.exp(-((np.arange(y0, y1) - p.y) ** 2) / (2 * sigma**2))
        gx = np.exp(-((np.arange(x0, x1) - p.x) ** 2) / (2 * sigma**2))
        peak = np.outer(gy, gx).astype(np.float32)
        if len(shape) == 3:
            targets = [out[p.frame]]
        elif p.channel is None:
            targets = [out[p.frame, c] for c in range(shape[1])]
        else:
            targets = [out[p.frame, p.channel]]
        for plane in targets:
            np.maximum(plane[y0:y1, x0:x1], peak, out=plane[y0:y1, x0:x1])
    return out
