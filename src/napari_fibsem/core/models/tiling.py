"""Stride padding and sliding-window inference with smooth blending (numpy only).

Networks with a downsampling encoder need sizes divisible by their stride, and a 3072x2048 frame
may not fit in memory at once. Any backend that can run a float32 ``N x 1 x h x w`` batch gets both
from here, so the ONNX and torch paths blend tiles the same way; multi-channel inputs (the event
heatmap net's frame windows, ``N x Cin x h x w``) go through the same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

InferFn = Callable[[np.ndarray], np.ndarray]
"""``(N x 1 x h x w float32) -> (N x C x h x w float32 probabilities)``; h, w divisible by the stride."""

Pads = tuple[int, int, int, int]
"""(top, bottom, left, right) padding added around an image."""


def pad_to_multiple(image: np.ndarray, stride: int) -> tuple[np.ndarray, Pads]:
    """Reflect-pad the last two axes of ``image`` to multiples of ``stride`` (padding split evenly).

    Reflection keeps edge statistics close to the real image; zero padding makes a fake dark border
    that a FIB-SEM model may read as a trench. Leading axes (frames, channels) are left alone.
    """
    h, w = image.shape[-2:]
    ph = -h % stride
    pw = -w % stride
    pads: Pads = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
    if ph == 0 and pw == 0:
        return image, pads
    mode = "reflect" if h > 1 and w > 1 else "edge"
    widths = [(0, 0)] * (image.ndim - 2) + [(pads[0], pads[1]), (pads[2], pads[3])]
    padded = np.pad(image, widths, mode=mode)
    return padded, pads


def crop_pads(array: np.ndarray, pads: Pads) -> np.ndarray:
    """Undo :func:`pad_to_multiple` on the last two axes of ``array``."""
    top, bottom, left, right = pads
    h, w = array.shape[-2:]
    return array[..., top : h - bottom, left : w - right]


def effective_tile_size(tile_size: int, stride: int) -> int:
    """``tile_size`` rounded down to a multiple of ``stride`` (at least one stride)."""
    return max(stride, (int(tile_size) // stride) * stride)


def tile_starts(length: int, tile: int, overlap: int, stride: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length``, overlapping by at least ``overlap``.

    Offsets are multiples of ``stride`` (when ``length`` and ``tile`` are) so every tile sees the same
    pixel grid as an untiled pass would: a CNN is only shift-equivariant for multiples of its stride.
    """
    if length <= tile:
        return [0]
    # An overlap that is a whole number of strides plus flooring the offsets keeps every step
    # <= tile - overlap, so neighbours always overlap by at least ``overlap``.
    overlap = min(-(-max(int(overlap), 0) // stride) * stride, tile - stride)
    n = math.ceil((length - overlap) / (tile - overlap))
    last = length - tile
    starts = sorted({(i * last // (n - 1)) // stride * stride for i in range(n - 1)} | {last})
    return starts


def blend_window(
    size: int, taper: int, taper_start: bool, taper_end: bool, floor: float = 1e-3
) -> np.ndarray:
    """1D weights: 1 in the middle, a raised-cosine ramp over ``taper`` pixels on tapered sides.

    Sides touching the image border are not tapered (nothing else covers them). ``floor`` keeps every
    weight positive so the blend is defined wherever any tile reaches.
    """
    w = np.ones(size, dtype=np.float32)
    taper = min(int(taper), size // 2)
    if taper > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(taper, dtype=np.float32) + 0.5) / taper)
        ramp = np.maximum(ramp, floor).astype(np.float32)
        if taper_start:
            w[:taper] = np.minimum(w[:taper], ramp)
        if taper_end:
            w[size - taper :] = np.minimum(w[size - taper :], ramp[::-1])
    return w


def predict_tiled(
    image: np.ndarray,
    infer: InferFn,
    *,
    num_classes: int,
    tile_size: int,
    overlap: float,
    stride: int,
    batch_size: int = 4,
) -> np.ndarray:
    """Class probabilities for a normalised ``image`` whose sides are multiples of ``stride``.

    ``image`` is one ``H x W`` image (``infer`` gets ``N x 1 x h x w`` tiles; returns ``C x H x W``)
    or a batch ``B x Cin x H x W`` of multi-channel images (``N x Cin x h x w`` tiles, tiles of
    several images share a network call; returns ``B x C x H x W``). ``overlap`` is a fraction of
    the tile (0.25 -> neighbours share a quarter of a tile); the overlapping parts are averaged
    with :func:`blend_window` weights so no seams show.
    """
    single = image.ndim == 2
    images = image[None, None] if single else image
    if images.ndim != 4:
        raise ValueError(f"expected an H x W image or a B x C x H x W batch, got shape {image.shape}")
    b, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    tile = effective_tile_size(tile_size, stride)
    th, tw = min(tile, h), min(tile, w)
    ov = int(round(overlap * tile))
    ys = tile_starts(h, th, ov, stride)
    xs = tile_starts(w, tw, ov, stride)
    wy = {y: blend_window(th, ov, y > 0, y + th < h) for y in ys}
    wx = {x: blend_window(tw, ov, x > 0, x + tw < w) for x in xs}

    acc = np.zeros((b, num_classes, h, w), dtype=np.float32)
    weight = np.zeros((h, w), dtype=np.float32)  # the same for every image of the batch
    for y in ys:
        for x in xs:
            weight[y : y + th, x : x + tw] += np.outer(wy[y], wx[x])
    origins = [(i, y, x) for i in range(b) for y in ys for x in xs]
    step = max(1, batch_size)
    for start in range(0, len(origins), step):
        chunk = origins[start : start + step]
        batch = np.stack([images[i, :, y : y + th, x : x + tw] for i, y, x in chunk])
        probs = infer(np.ascontiguousarray(batch, dtype=np.float32))
        for (i, y, x), p in zip(chunk, probs, strict=True):
            acc[i, :, y : y + th, x : x + tw] += p * np.outer(wy[y], wx[x])
    acc /= weight
    return acc[0] if single else acc
