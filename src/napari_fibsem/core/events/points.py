"""Point annotations exported by napari: ``index, axis-0, ..., axis-N`` or named columns.

Three axes mean (frame, y, x); four mean (frame, channel, y, x). The named form uses ``frame``
(or ``t``), optional ``channel`` (or ``c``), ``y`` and ``x``. A ``score`` column (what ``events
predict`` writes) is ignored, so predictions can be corrected and fed back as annotations.
Everything else is an error naming the file, so a CSV from another tool is never half-understood.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_fibsem.core.errors import FibsemError


class PointsError(FibsemError, ValueError):
    """A points CSV cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class EventPoint:
    frame: int
    y: float
    x: float
    channel: int | None = None


_NAMED = {"frame": "frame", "t": "frame", "channel": "channel", "c": "channel", "y": "y", "x": "x"}


def read_points(path: str | Path) -> list[EventPoint]:
    """Read a napari points CSV (axis or named columns); errors name the file and line."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise PointsError(f"{path}: cannot read ({e.strerror})") from None
    if not rows:
        raise PointsError(f"{path}: empty file (expected a header such as index,axis-0,axis-1,axis-2)")
    header = [h.strip().lower() for h in rows[0]]
    columns = _columns(header, path)
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise PointsError(f"{path}, line {line}: {len(row)} values for {len(header)} columns")
        try:
            values = {name: float(row[i]) for name, i in columns.items()}
        except ValueError:
            raise PointsError(f"{path}, line {line}: not a number in {row}") from None
        if not all(math.isfinite(v) for v in values.values()):
            raise PointsError(f"{path}, line {line}: non-finite coordinate in {row}")
        frame = values["frame"]
        if frame < 0 or abs(frame - round(frame)) > 1e-6:
            raise PointsError(f"{path}, line {line}: frame must be a whole number >= 0, got {frame}")
        channel = values.get("channel")
        out.append(EventPoint(int(round(frame)), values["y"], values["x"], None if channel is None else int(round(channel))))
    return out


def _columns(header: list[str], path: Path) -> dict[str, int]:
    axes = sorted((int(h.split("-")[1]), i) for i, h in enumerate(header) if h.startswith("axis-") and h[5:].isdigit())
    if axes:
        extra = [h for h in header if not h.startswith("axis-") and h not in ("index", "score")]
        if extra:
            raise PointsError(f"{path}: unexpected column(s) {extra} beside napari's axis-N columns")
        if [a for a, _ in axes] != list(range(len(axes))) or len(axes) not in (3, 4):
            raise PointsError(
                f"{path}: expected axis-0..axis-2 (frame, y, x) or axis-0..axis-3 (frame, channel, y, x), "
                f"got {[h for h in header if h.startswith('axis-')]}"
            )
        names = ["frame", "y", "x"] if len(axes) == 3 else ["frame", "channel", "y", "x"]
        return {n: i for n, (_, i) in zip(names, axes)}
    unknown = [h for h in header if h not in _NAMED and h != "index"]
    found = {_NAMED[h]: i for i, h in enumerate(header) if h in _NAMED}
    if unknown or not {"frame", "y", "x"} <= set(found):
        raise PointsError(
            f"{path}: expected columns index,axis-0,...,axis-N (napari) or frame,[channel,]y,x; got {header}"
        )
    return found


def check_inside(points: list[EventPoint], shape: tuple[int, ...], source: str | Path) -> None:
    """Every point lies inside a (T, [C,] Y, X) stack; the first offender is named."""
    t, h, w = shape[0], shape[-2], shape[-1]
    channels = shape[1] if len(shape) == 4 else None
    for p in points:
        if not (0 <= p.frame < t and -0.5 <= p.y < h - 0.5 and -0.5 <= p.x < w - 0.5):
            raise PointsError(f"{source}: point {p} is outside the stack of shape {tuple(shape)}")
        if p.channel is not None and not 0 <= p.channel < (channels or 1):  # no C axis: channel 0 only
            raise PointsError(f"{source}: point {p} names channel {p.channel}, the stack has {channels or 'no'} channels")


def as_array(points: list[EventPoint]) -> np.ndarray:
    """``N x 3`` float array of (frame, y, x)."""
    return np.array([[p.frame, p.y, p.x] for p in points], dtype=np.float64).reshape(-1, 3)
