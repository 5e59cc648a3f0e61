"""Feature detection: the catalogue, mask -> point rules, ``detect_features``, drawing.

Detection from a mask needs no model and no torch; a model only supplies the mask.
"""

from napari_fibsem.core.detection.catalogue import CATALOGUE, FeatureSpec, feature_names, get_feature
from napari_fibsem.core.detection.detect import (
    DetectedFeatures,
    FeatureResult,
    default_min_size,
    detect_features,
    resolve_pixel_size,
)
from napari_fibsem.core.detection.draw import draw_features
from napari_fibsem.core.detection.locate import NotFound

__all__ = [
    "CATALOGUE",
    "DetectedFeatures",
    "FeatureResult",
    "FeatureSpec",
    "NotFound",
    "default_min_size",
    "detect_features",
    "draw_features",
    "feature_names",
    "get_feature",
    "resolve_pixel_size",
]
