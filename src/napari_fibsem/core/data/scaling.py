"""Input scale: a model may see its images smaller than they are (numpy and scipy only).

A model trained at ``input_scale`` 0.5 sees a quarter of the pixels, so it trains on four times
the images per minute, each crop covers twice the field of view, and predicting a large frame is
about four times faster. Training and prediction resize the same way, with the same functions:

* images by area averaging (every input pixel counts by its overlap with the output pixel, so
  there is no aliasing), rounded back to the image's own dtype before normalisation;
* label masks by nearest neighbour (class ids stay class ids);
* class probabilities back to the full size by bilinear interpolation, before the argmax, so a
  caller gets a full-size mask and probabilities that still sum to 1.

Each resize is a separable product with two sparse matrices, so no torch is needed (the ONNX
backend runs without it); the probabilities use torch's identical bilinear kernel when torch is
installed, since it is several times faster on a large frame.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse


def check_input_scale(scale: float, source: str = "input_scale") -> float:
    """``scale`` as a float in (0, 1], else a ValueError naming ``source``."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"{source} must be a number in (0, 1], got {scale!r}") from None
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ValueError(f"{source} must be in (0, 1] (1 = full resolution), got {scale!r}")
    return value


def scaled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """The size an image of ``shape`` is seen at (each side rounded half up, at least 1 pixel)."""
    return tuple(max(1, int(math.floor(n * scale + 0.5))) for n in shape[-2:])  # type: ignore[return-value]


def _area_matrix(n_out: int, n_in: int) -> sparse.csr_matrix:
    """``n_out x n_in`` weights: output pixel i averages the input over [i, i + 1) * n_in / n_out."""
    ratio = n_in / n_out
    start = np.arange(n_out) * ratio
    stop = start + ratio
    rows, cols, vals = [], [], []
    first = np.floor(start).astype(np.int64)
    for k in range(int(math.ceil(ratio)) + 1):
        j = first + k
        overlap = np.minimum(stop, j + 1) - np.maximum(start, j)
        keep = (overlap > 1e-9) & (j < n_in)
        rows.append(np.flatnonzero(keep))
        cols.append(j[keep])
        vals.append(overlap[keep] / ratio)
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_out, n_in)
    )


def _linear_matrix(n_out: int, n_in: int) -> sparse.csr_matrix:
    """``n_out x n_in`` bilinear weights, pixel centres aligned (torch's ``align_corners=False``)."""
    src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    w_hi = src - lo
    rows = np.concatenate([np.arange(n_out), np.arange(n_out)])
    cols = np.concatenate([lo, hi])
    vals = np.concatenate([1.0 - w_hi, w_hi])
    return sparse.csr_matrix((vals, (rows, cols)), shape=(n_out, n_in))


def _separable(planes: np.ndarray, ry: sparse.csr_matrix, rx: sparse.csr_matrix) -> np.ndarray:
    """Apply ``ry @ plane @ rx.T`` to every plane of a ``... x H x W`` float array."""
    lead = planes.shape[:-2]
    h, w = planes.shape[-2:]
    flat = planes.reshape(-1, h, w)
    out = np.empty((flat.shape[0], ry.shape[0], rx.shape[0]), dtype=np.float32)
    for i, plane in enumerate(flat):
        out[i] = (rx @ (ry @ plane).T).T
    return out.reshape(*lead, ry.shape[0], rx.shape[0])


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area-average a 2D image to ``shape``, keeping its dtype (integers rounded and clipped)."""
    image = np.asarray(image)
    if tuple(image.shape) == tuple(shape):
        return image
    planes = image.astype(np.float32, copy=False)
    out = _separable(planes, _area_matrix(shape[0], image.shape[0]), _area_matrix(shape[1], image.shape[1]))
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(image.dtype)
    if image.dtype == bool:
        return out >= 0.5
    return out.astype(image.dtype, copy=False)


def resize_labels(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a class-id mask to ``shape`` (ids are never mixed)."""
    mask = np.asarray(mask)
    if tuple(mask.shape) == tuple(shape):
        return mask
    h, w = mask.shape
    rows = np.minimum(np.floor((np.arange(shape[0]) + 0.5) * (h / shape[0])).astype(np.int64), h - 1)
    cols = np.minimum(np.floor((np.arange(shape[1]) + 0.5) * (w / shape[1])).astype(np.int64), w - 1)
    return mask[np.ix_(rows, cols)]


def resize_probs(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``C x h x w`` probabilities to ``C x H x W`` (sums to 1 stay 1)."""
    h, w = probs.shape[-2:]
    if (h, w) == tuple(shape):
        return probs
    probs = np.asarray(probs, dtype=np.float32)
    try:  # torch's kernel is the same interpolation, multi-threaded: ~5x faster on a 3072x2048 frame
        import torch
        import torch.nn.functional as F
    except ImportError:
        return _separable(probs, _linear_matrix(shape[0], h), _linear_matrix(shape[1], w))
    x = torch.from_numpy(np.ascontiguousarray(probs.reshape(-1, h, w)))[None]
    with torch.inference_mode():
        out = F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False)[0]
    return out.numpy().reshape(*probs.shape[:-2], *shape)
