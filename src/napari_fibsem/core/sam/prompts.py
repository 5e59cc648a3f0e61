"""Checking SAM prompts and mapping them into the encoder's input frame.

Prompts arrive in image pixels (x right, y down, pixel centres at integers, as in napari); the
decoder wants them in the frame of the resized image the encoder saw. Bad input gets one clear
``ValueError`` per kind of mistake before any model code runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Prompts = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]


def check_prompts(points: Any, labels: Any, box: Any, shape: tuple[int, int]) -> Prompts:
    """Validated prompts as arrays ``(coords, labels, box)``; one clear error per kind of bad input."""
    h, w = shape
    lo_x, hi_x, lo_y, hi_y = -0.5, w - 0.5, -0.5, h - 0.5
    coords = labs = box_arr = None
    if points is not None and len(points) > 0:
        coords = np.asarray(points, dtype=np.float64)
        if coords.ndim != 2 or coords.shape[1] != 2:
            raise ValueError(f"points must be (x, y) pairs, got an array of shape {coords.shape}")
        if labels is None or len(labels) != len(coords):
            raise ValueError(f"{len(coords)} points need as many labels, got "
                             f"{'none' if labels is None else len(labels)}")
        labs = np.asarray(labels)
        if not np.isin(labs, (0, 1)).all():
            raise ValueError(f"point labels must be 1 (object) or 0 (background), got {sorted(set(labs.tolist()))}")
        bad = ~(np.isfinite(coords).all(1) & (coords[:, 0] >= lo_x) & (coords[:, 0] <= hi_x)
                & (coords[:, 1] >= lo_y) & (coords[:, 1] <= hi_y))
        if bad.any():
            raise ValueError(f"point {tuple(coords[bad][0].tolist())} (x, y) lies outside the {w}x{h} image")
        labs = labs.astype(np.int64)
    elif labels is not None and len(labels) > 0:
        raise ValueError(f"{len(labels)} labels given without points")
    if box is not None:
        box_arr = np.asarray(box, dtype=np.float64).reshape(-1)
        if box_arr.size != 4 or not np.isfinite(box_arr).all():
            raise ValueError(f"box must be four finite numbers (x0, y0, x1, y1), got {box}")
        x0, x1 = sorted(box_arr[[0, 2]])
        y0, y1 = sorted(box_arr[[1, 3]])
        if x0 < lo_x or y0 < lo_y or x1 > hi_x or y1 > hi_y:
            raise ValueError(f"box {tuple(box_arr.tolist())} (x0, y0, x1, y1) extends outside the {w}x{h} image")
        box_arr = np.array([x0, y0, x1, y1])
    if coords is None and box_arr is None:
        raise ValueError("predict needs at least one point or a box")
    return coords, labs, box_arr


def check_mask_input(mask_input: Any) -> np.ndarray | None:
    """``mask_input`` as float32, refused unless it is a previous result's 256 x 256 logits."""
    if mask_input is None:
        return None
    mask_input = np.asarray(mask_input, dtype=np.float32)
    if mask_input.shape[-2:] != (256, 256) or mask_input.size != 256 * 256:
        raise ValueError(f"mask_input must be the 256x256 low_res_logits of a previous result, "
                         f"got shape {mask_input.shape}")
    return mask_input


def to_input_frame(
    coords: np.ndarray | None,
    box: np.ndarray | None,
    original_size: tuple[int, int],
    input_size: tuple[int, int],
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Points and box scaled from the image's pixels to the resized image the encoder saw."""
    h, w = original_size
    h_in, w_in = input_size
    scale = np.array([w_in / w, h_in / h])
    if coords is not None:
        coords = coords * scale
    if box is not None:
        box = (box.reshape(2, 2) * scale).reshape(4)
    return coords, box
