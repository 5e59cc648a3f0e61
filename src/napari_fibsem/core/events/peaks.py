"""Score maps -> events, and event-level matching against annotated points.

``find_events`` turns a (T, H, W) score map (probabilities of an event at each pixel of each
frame) into a list of :class:`Event`: voxels at or above ``threshold`` are seeds, and every
connected (t, y, x) region of voxels at or above ``threshold * hysteresis`` that holds a seed is
one event, placed at the region's maximum (refined to the weighted centroid of its 3x3
neighbourhood in that frame). ``match_events`` pairs predictions with annotated points one to one,
greedily by score, and ``fbeta`` turns the counts into precision, recall and F-beta.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

# full (t, y, x) connectivity: diagonal neighbours, also across frames, belong to one region
_STRUCTURE = np.ones((3, 3, 3), bool)


@dataclass(frozen=True)
class Event:
    """One detected event: frame index, sub-pixel position, peak score and region size (voxels)."""

    frame: int
    y: float
    x: float
    score: float
    size: int


def _centroid(plane: np.ndarray, region: np.ndarray, y: int, x: int) -> tuple[float, float]:
    """Score-weighted centroid of the 3x3 neighbourhood of (y, x) restricted to the region."""
    y0, y1 = max(0, y - 1), min(plane.shape[0], y + 2)
    x0, x1 = max(0, x - 1), min(plane.shape[1], x + 2)
    w = np.where(region[y0:y1, x0:x1], plane[y0:y1, x0:x1], 0.0).astype(np.float64)
    total = w.sum()
    if not total > 0:
        return float(y), float(x)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    return float((w * yy).sum() / total), float((w * xx).sum() / total)


def _merge_close(events: list[Event], min_distance: float) -> list[Event]:
    """Fold events closer than ``min_distance`` in one frame into the higher-scoring one."""
    if min_distance <= 0:
        return events
    kept: list[Event] = []
    by_frame: dict[int, list[int]] = {}
    for ev in events:  # already sorted by score, descending
        for i in by_frame.get(ev.frame, []):
            k = kept[i]
            if math.hypot(k.y - ev.y, k.x - ev.x) < min_distance:
                kept[i] = replace(k, size=k.size + ev.size)
                break
        else:
            by_frame.setdefault(ev.frame, []).append(len(kept))
            kept.append(ev)
    return kept


def find_events(
    score_map: np.ndarray, threshold: float, hysteresis: float = 0.5, min_distance: int = 3
) -> list[Event]:
    """Events in a (T, H, W) score map, sorted by score (descending).

    ``hysteresis`` is the ratio of the growing threshold to the seed threshold (in (0, 1]);
    events closer than ``min_distance`` pixels in the same frame are merged into the stronger one.
    """
    scores = np.asarray(score_map)
    if scores.ndim != 3:
        raise ValueError(f"expected a (T, H, W) score map, got shape {scores.shape}")
    if not 0 < hysteresis <= 1:
        raise ValueError(f"hysteresis must be in (0, 1], got {hysteresis}")
    scores = np.nan_to_num(scores.astype(np.float32, copy=False), nan=0.0)
    low = threshold * hysteresis
    labels, n = ndimage.label(scores >= low, structure=_STRUCTURE)
    if n == 0:
        return []
    ids = np.arange(1, n + 1)
    peaks = np.asarray(ndimage.maximum(scores, labels, ids), np.float64)
    seeded = ids[peaks >= threshold]
    if seeded.size == 0:
        return []
    positions = ndimage.maximum_position(scores, labels, seeded)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    events = []
    for label, (t, y, x) in zip(seeded.tolist(), positions):
        t, y, x = int(t), int(y), int(x)
        cy, cx = _centroid(scores[t], labels[t] == label, y, x)
        events.append(Event(t, cy, cx, float(scores[t, y, x]), int(sizes[label])))
    events.sort(key=lambda e: (-e.score, e.frame, e.y, e.x))
    return _merge_close(events, min_distance)


def match_events(
    pred: Sequence[Event],
    truth: Sequence[Sequence[float]],
    distance: float,
    frames: int,
) -> tuple[int, int, int, list[tuple[int, int]]]:
    """Match predictions to annotated ``(frame, y, x)`` points, one to one, greedily by score.

    A prediction matches the nearest unmatched point within ``distance`` pixels and ``frames``
    frames (ties broken by the frame gap). Returns ``(tp, fp, fn, matches)`` with ``matches`` a
    list of ``(index in pred, index in truth)``.
    """
    by_frame: dict[int, list[int]] = {}
    for j, point in enumerate(truth):
        by_frame.setdefault(int(point[0]), []).append(j)
    used = [False] * len(truth)
    matches: list[tuple[int, int]] = []
    order = sorted(range(len(pred)), key=lambda i: -pred[i].score)
    for i in order:
        ev = pred[i]
        best: tuple[float, int, int] | None = None
        for t in range(ev.frame - frames, ev.frame + frames + 1):
            for j in by_frame.get(t, ()):
                if used[j]:
                    continue
                d = math.hypot(float(truth[j][1]) - ev.y, float(truth[j][2]) - ev.x)
                if d <= distance:
                    key = (d, abs(t - ev.frame), j)
                    if best is None or key < best:
                        best = key
        if best is not None:
            used[best[2]] = True
            matches.append((i, best[2]))
    tp = len(matches)
    return tp, len(pred) - tp, len(truth) - tp, matches


def fbeta(tp: int, fp: int, fn: int, beta: float = 1.0) -> tuple[float, float, float]:
    """``(precision, recall, F-beta)``; no predictions and no truth at all counts as perfect."""
    precision = tp / (tp + fp) if tp + fp else float(fn == 0)
    recall = tp / (tp + fn) if tp + fn else float(fp == 0)
    b2 = beta * beta
    denom = b2 * precision + recall
    f = (1 + b2) * precision * recall / denom if denom > 0 else 0.0
    return precision, recall, f
