"""The feature catalogue: every point an AutoLamella-style workflow asks a model for.

A feature names the class it reads by class-map *name* (so a lab's own class order works), its
display colour and its locating rule. Rules are data (``rule`` + ``side``), interpreted by
``locate.py``, so adding a feature is one line here and a lab can register its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Rule = Literal["image_centre", "centroid", "edge", "corner", "needle_tip", "lowest", "closest"]
Side = Literal["left", "right", "top", "bottom", "top_left", "top_right", "bottom_left", "bottom_right"]

ANY_FOREGROUND = "*"
"""``class_name`` of a feature that reads every non-background class (``CoreFeature``)."""


@dataclass(frozen=True)
class FeatureSpec:
    """What to find and how: ``rule`` applied to one object of ``class_name``.

    Rules (image coordinates, y down): ``centroid`` the object's centre of mass; ``edge`` the
    robust extreme line on ``side`` at the middle of the perpendicular extent; ``corner`` the
    extreme pixel along the ``side`` diagonal; ``needle_tip`` the pixel furthest from the border
    the object enters from; ``lowest`` the bottom-most pixel; ``closest`` the pixel nearest to the
    reference point (the image centre when none is given).
    """

    name: str
    class_name: str | None  # None: needs no mask (ImageCentre)
    rule: Rule
    color: str  # "#rrggbb"
    side: Side | None = None
    description: str = ""


def _f(name: str, cls: str | None, rule: Rule, color: str, side: Side | None = None, doc: str = "") -> FeatureSpec:
    return FeatureSpec(name, cls, rule, color, side, doc)


_FEATURES = (
    _f("ImageCentre", None, "image_centre", "#ffffff", doc="centre of the image; the target of alignments"),
    _f("NeedleTip", "manipulator", "needle_tip", "#00ff00", doc="needle pixel furthest from its entry border"),
    _f("NeedleTipBottom", "manipulator", "lowest", "#7fff00", doc="lowest needle pixel (lift-out contact)"),
    _f("LamellaCentre", "lamella", "centroid", "#ff0000"),
    _f("LamellaLeftEdge", "lamella", "edge", "#ff00ff", "left"),
    _f("LamellaRightEdge", "lamella", "edge", "#ff69b4", "right"),
    _f("LamellaTopEdge", "lamella", "edge", "#ffa500", "top"),
    _f("LamellaBottomEdge", "lamella", "edge", "#1e90ff", "bottom"),
    _f("LandingPost", "landing_post", "closest", "#00ffff", doc="post pixel closest to the reference point"),
    _f("LandingGridCentre", "landing_post", "centroid", "#40e0d0"),
    _f("LandingGridLeftEdge", "landing_post", "edge", "#20b2aa", "left"),
    _f("LandingGridRightEdge", "landing_post", "edge", "#5f9ea0", "right"),
    _f("CoreFeature", ANY_FOREGROUND, "centroid", "#32cd32", doc="centre of the chosen foreground object, any class"),
    _f("CopperAdapterCentre", "copper_adaptor", "centroid", "#ffd700"),
    _f("CopperAdapterTopEdge", "copper_adaptor", "edge", "#daa520", "top"),
    _f("CopperAdapterBottomEdge", "copper_adaptor", "edge", "#b8860b", "bottom"),
    _f("VolumeBlockCentre", "volume_block", "centroid", "#ee82ee"),
    _f("VolumeBlockTopEdge", "volume_block", "edge", "#da70d6", "top"),
    _f("VolumeBlockBottomEdge", "volume_block", "edge", "#ba55d3", "bottom"),
    _f("VolumeBlockTopLeftCorner", "volume_block", "corner", "#dda0dd", "top_left"),
    _f("VolumeBlockTopRightCorner", "volume_block", "corner", "#9370db", "top_right"),
    _f("VolumeBlockBottomLeftCorner", "volume_block", "corner", "#c71585", "bottom_left"),
    _f("VolumeBlockBottomRightCorner", "volume_block", "corner", "#8a2be2", "bottom_right"),
)

CATALOGUE: dict[str, FeatureSpec] = {f.name: f for f in _FEATURES}


def get_feature(name: str | FeatureSpec) -> FeatureSpec:
    """The catalogue entry for ``name``; unknown names list the known ones."""
    if isinstance(name, FeatureSpec):
        return name
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown feature {name!r}; known features: {sorted(CATALOGUE)}") from None


def feature_names() -> list[str]:
    return list(CATALOGUE)
