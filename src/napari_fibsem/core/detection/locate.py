"""Mask -> point: pick one object of a class, then apply a locating rule to it.

Everything works on the class's bounding box only (found for all classes in one
``ndimage.find_objects`` pass), so a 1024x1536 mask costs a few milliseconds, not one full-image
pass per feature. Points are ``(x, y)`` floats, origin top-left, y down; ties are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import ndimage as ndi

from napari_fibsem.core.data.components import components
from napari_fibsem.core.errors import FibsemError

EDGE_FRACTION = 0.1
"""An extreme row/column counts as the edge only if it holds this fraction of the object's widest
line: a one-pixel spur of a predicted mask does not move the edge, a straight edge is exact."""


class NotFound(FibsemError):
    """A feature cannot be located; the message is the reason shown to the user."""


@dataclass
class Instance:
    """One object as a boolean crop plus its offset in the full image."""

    mask: np.ndarray  # bool, tight bounding box
    y0: int
    x0: int
    image_shape: tuple[int, int]
    area: int = field(default=0)

    def __post_init__(self) -> None:
        if not self.area:
            self.area = int(self.mask.sum())

    @cached_property
    def _profiles(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mask.sum(axis=1), self.mask.sum(axis=0)  # per row, per column

    @cached_property
    def robust_box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` inclusive, ignoring thin spurs (see ``EDGE_FRACTION``)."""
        rows, cols = self._profiles
        r = np.flatnonzero(rows >= max(1, EDGE_FRACTION * rows.max()))
        c = np.flatnonzero(cols >= max(1, EDGE_FRACTION * cols.max()))
        return self.x0 + int(c[0]), self.y0 + int(r[0]), self.x0 + int(c[-1]), self.y0 + int(r[-1])

    def centroid(self) -> tuple[float, float]:
        rows, cols = self._profiles
        return (
            self.x0 + float(np.arange(cols.size) @ cols) / self.area,
            self.y0 + float(np.arange(rows.size) @ rows) / self.area,
        )

    def edge(self, side: str) -> tuple[float, float]:
        x0, y0, x1, y1 = self.robust_box
        xc, yc = (x0 + x1) / 2, (y0 + y1) / 2
        return {"left": (x0, yc), "right": (x1, yc), "top": (xc, y0), "bottom": (xc, y1)}[side]

    def _extreme(self, score: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> tuple[float, float]:
        best = score == score.max()
        return self.x0 + float(xs[best].mean()), self.y0 + float(ys[best].mean())

    def corner(self, side: str) -> tuple[float, float]:
        """Extreme pixel along a diagonal: exact for axis-aligned blocks, sensible for tilted ones."""
        ys, xs = np.nonzero(self.mask)
        sx = -1 if "left" in side else 1
        sy = -1 if "top" in side else 1
        return self._extreme(sx * xs + sy * ys, ys, xs)

    def lowest(self) -> tuple[float, float]:
        xs = np.flatnonzero(self.mask[-1])
        return self.x0 + float(xs.mean()), float(self.y0 + self.mask.shape[0] - 1)

    def entry_side(self) -> str:
        """The image border the object enters from: the one it touches most, else the nearest."""
        h, w = self.image_shape
        hh, ww = self.mask.shape
        y1, x1 = self.y0 + hh - 1, self.x0 + ww - 1
        touch = {
            "left": int(self.mask[:, 0].sum()) if self.x0 == 0 else 0,
            "right": int(self.mask[:, -1].sum()) if x1 == w - 1 else 0,
            "top": int(self.mask[0].sum()) if self.y0 == 0 else 0,
            "bottom": int(self.mask[-1].sum()) if y1 == h - 1 else 0,
        }
        side = max(touch, key=touch.__getitem__)
        if touch[side]:
            return side
        gaps = {"left": self.x0, "right": w - 1 - x1, "top": self.y0, "bottom": h - 1 - y1}
        return min(gaps, key=gaps.__getitem__)

    def needle_tip(self) -> tuple[float, float]:
        side = self.entry_side()
        if side in ("left", "right"):
            col = self.mask.shape[1] - 1 if side == "left" else 0
            ys = np.flatnonzero(self.mask[:, col])
            return float(self.x0 + col), self.y0 + float(ys.mean())
        row = self.mask.shape[0] - 1 if side == "top" else 0
        xs = np.flatnonzero(self.mask[row])
        return self.x0 + float(xs.mean()), float(self.y0 + row)

    def closest(self, point: tuple[float, float]) -> tuple[float, float]:
        ys, xs = np.nonzero(self.mask)
        d2 = (xs + self.x0 - point[0]) ** 2 + (ys + self.y0 - point[1]) ** 2
        return self._extreme(-d2, ys, xs)


def class_boxes(mask: np.ndarray) -> list[tuple[slice, slice] | None]:
    """Bounding box of every class id in one pass (index = class id; None when absent)."""
    return [None, *ndi.find_objects(mask)]


def find_instances(
    mask: np.ndarray, class_id: int, box: tuple[slice, slice], min_size: int
) -> tuple[list[Instance], int]:
    """8-connected objects of ``class_id`` inside ``box`` with at least ``min_size`` pixels.

    Also returns the size of the largest object, so a "not found" can say how close it came.
    """
    labels, sizes, keep = components(mask[box] == class_id, min_size, connectivity=8)
    objs = ndi.find_objects(labels, max_label=int(keep[-1])) if keep.size else []
    out = [
        Instance(
            mask=labels[objs[k - 1]] == k,
            y0=box[0].start + objs[k - 1][0].start,
            x0=box[1].start + objs[k - 1][1].start,
            image_shape=mask.shape,
            area=int(sizes[k]),
        )
        for k in keep
    ]
    return out, int(sizes.max())


def choose_instance(instances: list[Instance], reference: tuple[float, float] | None) -> Instance:
    """The object whose centroid is closest to ``reference``; without one, the largest."""
    if len(instances) == 1 or reference is None:
        return max(instances, key=lambda i: i.area)

    def dist2(inst: Instance) -> float:
        cx, cy = inst.centroid()
        return (cx - reference[0]) ** 2 + (cy - reference[1]) ** 2

    return min(instances, key=dist2)
