"""Input normalisation, stored with each model so that training and inference agree.

A model trained on ``image / 255`` gives nonsense on raw uint16 counts; keeping the recipe in the
checkpoint bundle (instead of in whichever script trained it) makes that mistake impossible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

NormalizationMode = Literal["fixed", "percentile"]


@dataclass(frozen=True)
class Normalization:
    """How a 2D grayscale image becomes the float32 network input.

    ``fixed``: divide by ``scale`` (default: the dtype's maximum, e.g. 255 for uint8, 65535 for
    uint16, 1 for floats), then ``(x - mean) / std``. Identical for every image, so a model sees
    absolute brightness.

    ``percentile``: per image, map the ``low``/``high`` percentiles to 0/1 (values outside are
    kept, not clipped), then ``(x - mean) / std``. Robust to detector gain and bit depth.

    The default (fixed, mean 0, std 1) is OpenFIBSEM's convention: ``image / 255`` for uint8.
    """

    mode: NormalizationMode = "fixed"
    mean: float = 0.0
    std: float = 1.0
    scale: float | None = None
    low: float = 1.0
    high: float = 99.0

    def __post_init__(self) -> None:
        if self.mode not in ("fixed", "percentile"):
            raise ValueError(f"normalisation mode must be 'fixed' or 'percentile', not {self.mode!r}")
        if not self.std > 0:
            raise ValueError(f"normalisation std must be > 0, got {self.std}")
        if self.scale is not None and not self.scale > 0:
            raise ValueError(f"normalisation scale must be > 0, got {self.scale}")
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}")

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Return ``image`` (any shape, any real dtype) normalised as float32."""
        image = np.asarray(image)
        if image.dtype == bool:
            image = image.astype(np.uint8)
        if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
            raise TypeError(f"cannot normalise an image of dtype {image.dtype}")
        x = image.astype(np.float32, copy=True)
        if self.mode == "fixed":
            x /= np.float32(self.scale if self.scale is not None else dtype_scale(image.dtype))
        else:
            lo, hi = np.percentile(x, [self.low, self.high])
            x -= np.float32(lo)
            x /= np.float32(max(float(hi - lo), 1e-6))
        if self.mean != 0.0:
            x -= np.float32(self.mean)
        if self.std != 1.0:
            x /= np.float32(self.std)
        return x

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Normalization:
        """Inverse of :meth:`to_dict`; unknown keys raise so that a typo is not silently ignored."""
        if data is None:
            return cls()
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown normalisation keys {sorted(unknown)}")
        return cls(**dict(data))


def dtype_scale(dtype: np.dtype) -> float:
    """The value that maps to 1.0 in ``fixed`` mode: the integer maximum, or 1 for floats."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0
