"""Connected components with a size filter: the one instance finder behind object export and
feature detection (both label a class's pixels and drop specks under a minimum size)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def structure(connectivity: int) -> np.ndarray:
    """The neighbourhood for ``connectivity`` 4 or 8 (8: a diagonal step does not split a thin tip)."""
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    return ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)


def components(binary: np.ndarray, min_size: int = 0, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label the connected components of ``binary``.

    Returns ``(labels, sizes, kept)``: the label image (0 = background), the pixel count of every
    label (``sizes[0]`` is 0) and the ids of the components with at least ``min_size`` pixels
    (at least 1), in increasing order.
    """
    labels, count = ndimage.label(binary, structure(connectivity))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    return labels, sizes, np.flatnonzero(sizes >= max(min_size, 1))
