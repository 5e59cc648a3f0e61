"""Synthetic live-cell movies with known events, for tests, demos and benchmarks.

Bright blobs drift slowly over a noisy background; at known frames some of them *split* (one blob
becomes two that move apart over a few frames) and others *blink* (vanish for a few frames). The
annotation a person would make is the split position on the split frame and the frame after;
blinks are distractors, not events. Seeded: the same seed gives the same movie and points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_fibsem.core.events.points import EventPoint


@dataclass(frozen=True)
class SyntheticMovie:
    stack: np.ndarray  # uint16 (T, Y, X)
    points: list[EventPoint]  # annotations: two per split event (split frame and the next)
    events: list[tuple[int, float, float]]  # (frame, y, x) of each split
    pixel_size: float  # metres per pixel
    frame_interval: float  # seconds


def _blob(h: int, w: int, y: float, x: float, sy: float, sx: float) -> np.ndarray:
    yy = np.exp(-((np.arange(h) - y) ** 2) / (2 * sy**2))
    xx = np.exp(-((np.arange(w) - x) ** 2) / (2 * sx**2))
    return np.outer(yy, xx)


def synthetic_movie(
    seed: int = 0,
    frames: int = 24,
    size: tuple[int, int] = (128, 160),
    blobs: int = 8,
    splits: int = 3,
    blinks: int = 2,
    noise: float = 1.0,
) -> SyntheticMovie:
    """A movie of ``frames`` x ``size`` with ``splits`` split events among ``blobs`` blobs."""
    rng = np.random.default_rng(seed)
    h, w = size
    margin = 12
    splits = min(splits, blobs)
    pos = np.column_stack([rng.uniform(margin, h - margin, blobs), rng.uniform(margin, w - margin, blobs)])
    drift = rng.normal(0, 0.15, (blobs, 2))
    split_frames = rng.integers(3, max(4, frames - 4), splits)
    angles = rng.uniform(0, np.pi, splits)
    blink_ids = rng.choice(np.arange(splits, blobs), size=min(blinks, blobs - splits), replace=False)
    blink_frames = rng.integers(1, max(2, frames - 3), len(blink_ids))
    stack = np.zeros((frames, h, w), np.float64)
    events, points = [], []
    for t in range(frames):
        frame = np.zeros((h, w))
        for b in range(blobs):
            y, x = pos[b] + drift[b] * t
            if b < splits and t >= split_frames[b]:
                dt = t - split_frames[b]
                d = 1.5 + 1.8 * dt
                dy, dx = d * np.sin(angles[b]), d * np.cos(angles[b])
                frame += _blob(h, w, y + dy, x + dx, 2.0, 2.0) + _blob(h, w, y - dy, x - dx, 2.0, 2.0)
            elif b in blink_ids and 0 <= t - blink_frames[list(blink_ids).index(b)] < 3:
                continue
            else:
                frame += _blob(h, w, y, x, 2.2, 3.2)
        stack[t] = frame
    for b in range(splits):
        t = int(split_frames[b])
        y, x = pos[b] + drift[b] * t
        events.append((t, float(y), float(x)))
        points += [EventPoint(t, float(y), float(x)), EventPoint(min(t + 1, frames - 1), *map(float, pos[b] + drift[b] * (t + 1)))]
    signal = 800 * stack + 100
    movie = rng.poisson(signal * max(noise, 1e-6)) / max(noise, 1e-6) if noise > 0 else signal
    return SyntheticMovie(np.clip(movie, 0, 65535).astype(np.uint16), points, events, 4e-8, 0.5)
