"""Milling patterns drawn as shapes (napari's, or any (row, col) vertices): conversion to the
microscope's patterns, and their description in words.

The shapes are drawn on the ion image in its pixel coordinates (row, col; pixel centres at
integers, row down). :func:`shapes_to_patterns` turns them into the core's patterns, image-plane
metres from the image centre with +x right and +y **up**:

    x = (col - (w - 1) / 2) * pixel_size,    y = ((h - 1) / 2 - row) * pixel_size

rectangle -> ``RectanglePattern`` (rotation counter-clockwise, folded into ±45° by naming the
more horizontal edge the width), line -> ``LinePattern``, path -> one ``LinePattern`` per
segment, polygon -> ``PolygonPattern``, ellipse -> ``CirclePattern`` (only when it is a circle).
:func:`describe_patterns` and :func:`milling_summary` say in words what will be milled (the
confirmation before milling), :func:`format_current` and :func:`format_duration` the numbers.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from napari_fibsem.core.errors import FibsemError
from napari_fibsem.core.microscope import (
    CirclePattern,
    LinePattern,
    Pattern,
    PolygonPattern,
    RectanglePattern,
)
from napari_fibsem.core.microscope.structures import pattern_bounds

CIRCLE_TOLERANCE = 0.02  # an ellipse whose axes differ by more (relative) is refused
_EDGE = 1e-6  # px: vertices this far past the image edge still count as inside
_LISTED = 8  # the confirmation lists this many patterns one by one, then counts the rest


class PatternError(FibsemError, ValueError):
    """A shape cannot be milled; the message names the shape (1-based) and why."""


def pixels_to_metres(points: np.ndarray, image_shape: tuple[int, int], pixel_size: float) -> np.ndarray:
    """(N, 2) (row, col) pixel coordinates -> (N, 2) (x, y) metres from the centre, +y up."""
    h, w = image_shape
    points = np.asarray(points, dtype=float)[:, -2:]
    x = (points[:, 1] - (w - 1) / 2) * pixel_size
    y = ((h - 1) / 2 - points[:, 0]) * pixel_size
    return np.stack([x, y], axis=1)


def _fold(angle: float) -> float:
    """An edge direction as an angle in [-pi/2, pi/2) (an edge has no sense of direction)."""
    folded = (angle + math.pi / 2) % math.pi - math.pi / 2
    return 0.0 if abs(folded) < 1e-12 else folded


def _rectangle(v: np.ndarray, depth: float, n: int) -> RectanglePattern:
    centre = v.mean(axis=0)
    e1, e2 = v[1] - v[0], v[2] - v[1]
    a1 = _fold(math.atan2(e1[1], e1[0]))
    width_edge, height_edge = (e1, e2) if abs(a1) <= math.pi / 4 + 1e-12 else (e2, e1)
    width, height = float(np.hypot(*width_edge)), float(np.hypot(*height_edge))
    if width <= 0 or height <= 0:
        raise PatternError(f"shape {n} (rectangle) has no area")
    rotation = _fold(math.atan2(width_edge[1], width_edge[0]))
    return RectanglePattern(float(centre[0]), float(centre[1]), width, height, depth, rotation)


def _circle(v: np.ndarray, depth: float, n: int) -> CirclePattern:
    a, b = float(np.hypot(*(v[1] - v[0]))) / 2, float(np.hypot(*(v[2] - v[1]))) / 2
    if min(a, b) <= 0:
        raise PatternError(f"shape {n} (ellipse) has no area")
    if abs(a - b) > CIRCLE_TOLERANCE * max(a, b):
        raise PatternError(
            f"shape {n} is an ellipse ({2 * a * 1e6:.2f} x {2 * b * 1e6:.2f} µm), not a circle; only circles "
            "can be milled: hold Shift while drawing it, or draw a polygon"
        )
    centre = v.mean(axis=0)
    return CirclePattern(float(centre[0]), float(centre[1]), (a + b) / 2, depth)


def shapes_to_patterns(
    shapes: Sequence[np.ndarray],
    shape_types: Sequence[str],
    image_shape: tuple[int, int],
    pixel_size: float,
    depth: float,
) -> list[Pattern]:
    """Milling patterns (image metres, +y up) of napari shapes given in the image's pixel
    coordinates. Raises :class:`PatternError` for a shape outside the image or one that cannot
    be milled; nothing is converted then."""
    h, w = image_shape
    patterns: list[Pattern] = []
    for n, (data, kind) in enumerate(zip(shapes, shape_types), start=1):
        px = np.asarray(data, dtype=float)[:, -2:]
        rows, cols = px[:, 0], px[:, 1]
        if (
            rows.min() < -0.5 - _EDGE
            or rows.max() > h - 0.5 + _EDGE
            or cols.min() < -0.5 - _EDGE
            or (cols.max() > w - 0.5 + _EDGE)
        ):
            raise PatternError(f"shape {n} ({kind}) reaches outside the ion image ({w} x {h} px)")
        v = pixels_to_metres(px, image_shape, pixel_size)
        if kind == "rectangle":
            patterns.append(_rectangle(v, depth, n))
        elif kind == "ellipse":
            patterns.append(_circle(v, depth, n))
        elif kind in ("line", "path"):
            segments = [(a, b) for a, b in zip(v[:-1], v[1:]) if np.hypot(*(b - a)) > 0]
            if not segments:
                raise PatternError(f"shape {n} ({kind}) has no length")
            patterns.extend(LinePattern(*map(float, (*a, *b)), depth=depth) for a, b in segments)
        elif kind == "polygon":
            if len(v) < 3:
                raise PatternError(f"shape {n} (polygon) needs at least 3 vertices")
            patterns.append(PolygonPattern(tuple(map(tuple, v)), depth))
        else:
            raise PatternError(f"shape {n} is a {kind}, which cannot be milled")
    return patterns


def _um(metres: float) -> str:
    return f"{metres * 1e6:.2f} µm"


def describe_pattern(p: Pattern) -> str:
    """One pattern in words with its size, e.g. ``rectangle 12.50 × 3.20 µm``."""
    if isinstance(p, RectanglePattern):
        turned = f", turned {math.degrees(p.rotation):.0f}°" if p.rotation else ""
        return f"rectangle {p.width * 1e6:.2f} × {_um(p.height)}{turned}"
    if isinstance(p, CirclePattern):
        return f"circle Ø {_um(2 * p.radius)}"
    if isinstance(p, LinePattern):
        return f"line {_um(math.hypot(p.end_x - p.start_x, p.end_y - p.start_y))} long"
    x0, y0, x1, y1 = pattern_bounds(p)
    return f"polygon of {len(p.vertices)} vertices within {(x1 - x0) * 1e6:.2f} × {_um(y1 - y0)}"


def describe_patterns(patterns: Sequence[Pattern]) -> str:
    """``3 patterns (2 rectangles, 1 line)``: the count and the kinds."""
    kinds = Counter(p.kind for p in patterns)
    parts = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in kinds.items())
    return f"{len(patterns)} pattern{'s' if len(patterns) != 1 else ''} ({parts})"


def milling_summary(patterns: Sequence[Pattern], depth: float, current: float, seconds: float) -> str:
    """What the confirmation before milling says: patterns with sizes, depth, current, time."""
    lines = [f"Mill {describe_patterns(patterns)} with the ion beam?", ""]
    lines += [f"  {n}. {describe_pattern(p)}" for n, p in enumerate(patterns[:_LISTED], start=1)]
    if len(patterns) > _LISTED:
        lines.append(f"  … and {len(patterns) - _LISTED} more")
    lines += [
        "",
        f"Depth: {_um(depth)}",
        f"Milling current: {format_current(current)}",
        f"Estimated time: {format_duration(seconds)}",
    ]
    return "\n".join(lines)


def format_current(amperes: float) -> str:
    """A beam current the way the instrument lists it: ``1 pA``, ``300 pA``, ``2.5 nA``."""
    if amperes >= 1e-9 * (1 - 1e-9):
        return f"{amperes * 1e9:.3g} nA"
    return f"{amperes * 1e12:.3g} pA"


def format_duration(seconds: float) -> str:
    """``< 0.1 s``, ``12.3 s``, ``5 min 02 s``, ``1 h 05 min``."""
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 0.05:
        return "< 0.1 s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
