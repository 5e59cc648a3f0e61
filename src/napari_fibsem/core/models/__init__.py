"""Segmentation models: the :class:`SegmentationModel` interface, backends, bundles, ``load_model``.

Names are resolved lazily so that ``import napari_fibsem.core.models`` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

_EXPORTS = {
    "Prediction": "base",
    "SegmentationModel": "base",
    "TiledSegmentationModel": "base",
    "ModelLoadError": "base",
    "Normalization": "normalization",
    "BundleMetadata": "bundle",
    "save_bundle": "bundle",
    "read_bundle": "bundle",
    "detect_format": "formats",
    "detect_backend": "formats",
    "SEGMENTATION_BACKENDS": "registry",
    "get_backend": "registry",
    "UnknownBackendError": "registry",
    "BackendUnavailableError": "registry",
    "load_model": "loader",
    "SmpModel": "smp_backend",
    "create_model": "smp_backend",
}

__all__ = [
    "SEGMENTATION_BACKENDS",
    "BackendUnavailableError",
    "BundleMetadata",
    "ModelLoadError",
    "Normalization",
    "Prediction",
    "SegmentationModel",
    "SmpModel",
    "TiledSegmentationModel",
    "UnknownBackendError",
    "create_model",
    "detect_backend",
    "detect_format",
    "get_backend",
    "load_model",
    "read_bundle",
    "save_bundle",
]

if TYPE_CHECKING:
    from napari_fibsem.core.models.base import (
        ModelLoadError,
        Prediction,
        SegmentationModel,
        TiledSegmentationModel,
    )
    from napari_fibsem.core.models.bundle import BundleMetadata, read_bundle, save_bundle
    from napari_fibsem.core.models.formats import detect_backend, detect_format
    from napari_fibsem.core.models.loader import load_model
    from napari_fibsem.core.models.normalization import Normalization
    from napari_fibsem.core.models.registry import (
        SEGMENTATION_BACKENDS,
        BackendUnavailableError,
        UnknownBackendError,
        get_backend,
    )
    from napari_fibsem.core.models.smp_backend import SmpModel, create_model


# lazy_loader (as scikit-image and napari do): a name's submodule is imported on first access.
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__, submod_attrs={m: [n for n, mod in _EXPORTS.items() if mod == m] for m in set(_EXPORTS.values())}
)
