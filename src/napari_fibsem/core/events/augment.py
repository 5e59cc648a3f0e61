"""Augmentation of event samples: every frame of a window and its target move together.

A sample is ``frames`` (K, H, W): the n_frames window (times channels) of a normalised movie crop,
and ``target`` (H, W): the Gaussian map of the centre frame. Geometry (rot90, flips, elastic
deformation) is drawn once per sample and applied to all K frames and to the target alike, so an
event stays exactly under its peak; intensity changes (gamma, brightness, Poisson noise) touch the
frames only. Random numbers come from the generator passed in, always drawn in the same order, so
a (seed, epoch, sample, copy) generator gives the same sample every time.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_fibsem.core.events.settings import EventSettings

ELASTIC_SMOOTHING_PX = 4.0
"""Gaussian smoothing (pixels) of the random displacement field: the size of the elastic wrinkles."""


def augment_sample(
    frames: np.ndarray, target: np.ndarray, settings: EventSettings, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented copy of ``(frames, target)`` as float32 arrays (inputs are left untouched)."""
    frames = np.asarray(frames, np.float32)
    target = np.asarray(target, np.float32)
    if frames.ndim != 3 or target.shape != frames.shape[1:]:
        raise ValueError(
            f"expected frames (K, H, W) and a target (H, W), got {frames.shape} and {target.shape}"
        )
    h, w = target.shape
    # geometry: one draw for the whole sample
    k = int(rng.integers(4)) if h == w else 2 * int(rng.integers(2))  # non-square crops keep their shape
    flip_x, flip_y = rng.random(2) < 0.5
    frames, target = np.rot90(frames, k, axes=(1, 2)), np.rot90(target, k)
    if flip_x:
        frames, target = frames[:, :, ::-1], target[:, ::-1]
    if flip_y:
        frames, target = frames[:, ::-1], target[::-1]
    amplitude = settings.elastic_px
    if amplitude > 0:
        frames, target = elastic(frames, target, amplitude, rng)
    # intensity: frames only
    g = rng.uniform(*settings.gamma_range)
    b = rng.uniform(*settings.brightness_range)
    frames = np.array(frames, np.float32)  # a fresh contiguous copy, written in place below
    positive = np.maximum(frames, 0.0)
    negative = frames - positive  # values below the low percentile keep their (small) offset
    if g != 1.0:
        positive = positive ** np.float32(g)
    positive *= np.float32(b)
    if settings.poisson > 0:
        photons = 1.0 / settings.poisson
        positive = (rng.poisson(positive * photons) / photons).astype(np.float32)
    frames = positive + negative
    return np.ascontiguousarray(frames, np.float32), np.ascontiguousarray(target, np.float32)


def elastic(
    frames: np.ndarray, target: np.ndarray, amplitude: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Warp all frames and the target by one smooth random field of up to ``amplitude`` px."""
    h, w = target.shape
    field = []
    for _ in range(2):
        d = ndimage.gaussian_filter(rng.uniform(-1.0, 1.0, (h, w)), ELASTIC_SMOOTHING_PX, mode="reflect")
        peak = float(np.abs(d).max())
        field.append(d * (amplitude / peak) if peak > 0 else d)
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    coords = np.stack([yy + field[0], xx + field[1]])

    def warp(plane: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(plane, coords, order=1, mode="reflect").astype(np.float32)

    return np.stack([warp(f) for f in frames]), warp(target)
