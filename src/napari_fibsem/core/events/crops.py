"""Event crops: annotated points grouped into events, cut out of the movie with context frames.

Points close in space (``link_distance`` px) and time (``link_frames``) join one event (a person
marks an event on a few consecutive frames). Each event becomes a crop of ``size`` px around its
centre (clamped inside the image, smaller on images narrower than ``size``) holding the frames from
``frames_before`` before its first point to ``frames_after`` after its last (clamped to the movie).
Negatives are crops of the same shape whose space-time box touches no event's box.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from napari_fibsem.core.events.points import EventPoint


@dataclass(frozen=True)
class EventCrop:
    """Where one crop comes from; arrays are cut with :func:`cut`."""

    label: str  # "event" | "negative"
    frames: tuple[int, int]  # first and last source frame (inclusive)
    box: tuple[int, int, int, int]  # y0, x0, y1, x1 (exclusive ends) in the source image
    points: tuple[EventPoint, ...] = field(default=())  # in source coordinates
    event_frames: tuple[int, int] | None = None  # first/last annotated frame (source), events only

    def id(self, source: str) -> str:
        """Stable id from the source and position: re-running gives the same ids."""
        key = f"{source}|{self.label}|{self.frames}|{self.box}"
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    def local_points(self) -> list[tuple[int, float, float]]:
        """Points as (crop frame, crop y, crop x)."""
        y0, x0 = self.box[0], self.box[1]
        return [(p.frame - self.frames[0], p.y - y0, p.x - x0) for p in self.points]


def group_points(points: list[EventPoint], link_distance: float = 10.0, link_frames: int = 2) -> list[list[EventPoint]]:
    """Join points within ``link_distance`` px (inclusive) and ``link_frames`` frames (inclusive) into events.

    A k-d tree finds the candidate pairs (no N x N matrix, so thousands of points stay cheap); each
    candidate is then checked with the exact rule, so ties at the radius behave as before.
    """
    n = len(points)
    labels = np.arange(n)
    if n > 1 and link_distance >= 0 and link_frames >= 0:
        arr = np.array([[p.frame, p.y, p.x] for p in points], dtype=np.float64)
        finite = np.flatnonzero(np.isfinite(arr).all(axis=1))  # points read from files always are
        # Frames scaled so ``link_frames`` spans ``link_distance``: the tree's ball then holds every
        # pair that passes both limits (widened a hair so rounding never drops a tie).
        bounded = 0 < link_distance < np.inf and 0 < link_frames < np.inf
        scale = link_distance / link_frames if bounded else 1.0
        radius = float(np.hypot(link_frames * scale, link_distance)) * (1 + 1e-9) + 1e-12
        pairs = cKDTree(arr[finite] * [scale, 1.0, 1.0]).query_pairs(radius, output_type="ndarray")
        i, j = finite[pairs[:, 0]], finite[pairs[:, 1]]
        dt = np.abs(arr[i, 0] - arr[j, 0])
        ds = np.hypot(arr[i, 1] - arr[j, 1], arr[i, 2] - arr[j, 2])
        keep = (dt <= link_frames) & (ds <= link_distance)
        graph = coo_matrix((np.ones(int(keep.sum())), (i[keep], j[keep])), shape=(n, n))
        labels = connected_components(graph, directed=False)[1]
    groups: dict[int, list[EventPoint]] = {}
    for label, p in zip(labels.tolist(), points):
        groups.setdefault(label, []).append(p)
    return sorted(groups.values(), key=lambda g: (min(p.frame for p in g), g[0].y, g[0].x))


def _box(cy: float, cx: float, size: int, h: int, w: int) -> tuple[int, int, int, int]:
    sh, sw = min(size, h), min(size, w)
    y0 = int(np.clip(round(cy - sh / 2), 0, h - sh))
    x0 = int(np.clip(round(cx - sw / 2), 0, w - sw))
    return y0, x0, y0 + sh, x0 + sw


def event_crops(
    points: list[EventPoint],
    shape: tuple[int, ...],
    size: int = 256,
    frames_before: int = 2,
    frames_after: int = 2,
    link_distance: float = 10.0,
    link_frames: int = 2,
) -> list[EventCrop]:
    """One crop per event for a movie of ``shape`` (T, [C,] Y, X)."""
    t, h, w = shape[0], shape[-2], shape[-1]
    out = []
    for group in group_points(points, link_distance, link_frames):
        first, last = min(p.frame for p in group), max(p.frame for p in group)
        cy, cx = float(np.mean([p.y for p in group])), float(np.mean([p.x for p in group]))
        frames = (max(0, first - frames_before), min(t - 1, last + frames_after))
        out.append(EventCrop("event", frames, _box(cy, cx, size, h, w), tuple(group), (first, last)))
    return out


def _overlaps(a: EventCrop, b: EventCrop) -> bool:
    time = a.frames[0] <= b.frames[1] and b.frames[0] <= a.frames[1]
    space = a.box[0] < b.box[2] and b.box[0] < a.box[2] and a.box[1] < b.box[3] and b.box[1] < a.box[3]
    return time and space


def negative_crops(
    events: list[EventCrop], shape: tuple[int, ...], count: int, size: int = 256, length: int | None = None,
    seed: int = 0, tries: int = 200,
) -> list[EventCrop]:  # fmt: skip
    """Up to ``count`` random crops (``length`` frames) whose space-time box overlaps no event crop.

    Fewer come back when the movie has no room left (each one also avoids the others).
    """
    t, h, w = shape[0], shape[-2], shape[-1]
    length = length or (max((e.frames[1] - e.frames[0] + 1 for e in events), default=5))
    length = min(length, t)
    rng = np.random.default_rng(seed)
    taken = list(events)
    out: list[EventCrop] = []
    for _ in range(count * tries):
        if len(out) == count:
            break
        f0 = int(rng.integers(0, t - length + 1))
        box = _box(rng.uniform(0, h), rng.uniform(0, w), size, h, w)
        cand = EventCrop("negative", (f0, f0 + length - 1), box)
        if not any(_overlaps(cand, other) for other in taken):
            out.append(cand)
            taken.append(cand)
    return out


def cut(stack: np.ndarray, crop: EventCrop) -> np.ndarray:
    """The crop's frames and box from a (T, [C,] Y, X) array."""
    y0, x0, y1, x1 = crop.box
    return stack[crop.frames[0] : crop.frames[1] + 1, ..., y0:y1, x0:x1]
