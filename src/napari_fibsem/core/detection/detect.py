"""``detect_features``: image (+ model) or mask -> named points in pixels and metres.

Pixel positions use the image convention (origin top-left, y down). Offsets in metres use the
microscope convention: origin at the image centre, +x right, +y up, so an offset can be handed
to a stage or beam-shift move as it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from napari_fibsem.core.detection.catalogue import ANY_FOREGROUND, CATALOGUE, FeatureSpec, get_feature
from napari_fibsem.core.detection.locate import (
    Instance,
    NotFound,
    choose_instance,
    class_boxes,
    find_instances,
)
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.keypoints import Keypoint

Point = tuple[float, float]


@dataclass(frozen=True)
class FeatureResult:
    """One feature's outcome: a pixel position, or ``None`` and the reason it was not found."""

    name: str
    class_name: str | None
    color: str
    px: Point | None
    reason: str = ""

    @property
    def found(self) -> bool:
        return self.px is not None


@dataclass(frozen=True)
class DetectedFeatures:
    """The features of one image, with what is needed to turn pixels into metres."""

    features: dict[str, FeatureResult]
    shape: tuple[int, int]  # (height, width) of the image
    pixel_size: float  # metres per pixel
    mask: np.ndarray | None = None  # the class mask the points were read from
    source: str = ""  # checkpoint or "mask"

    def __getitem__(self, name: str) -> FeatureResult:
        try:
            return self.features[name]
        except KeyError:
            raise KeyError(f"{name!r} was not requested; detected features: {list(self.features)}") from None

    def __iter__(self) -> Iterator[FeatureResult]:
        return iter(self.features.values())

    def __len__(self) -> int:
        return len(self.features)

    @property
    def found(self) -> list[str]:
        return [f.name for f in self if f.found]

    @property
    def missing(self) -> dict[str, str]:
        return {f.name: f.reason for f in self if not f.found}

    @property
    def centre(self) -> Point:
        return ((self.shape[1] - 1) / 2, (self.shape[0] - 1) / 2)

    def _px(self, name: str) -> Point:
        f = self[name]
        if f.px is None:
            raise NotFound(f"{name} was not found: {f.reason}")
        return f.px

    def offset_m(self, name: str) -> Point:
        """Offset of ``name`` from the image centre in metres (+x right, +y up)."""
        return _to_metres(self.centre, self._px(name), self.pixel_size)

    def offset_between_m(self, start: str, end: str) -> Point:
        """Vector from feature ``start`` to feature ``end`` in metres (+x right, +y up)."""
        return _to_metres(self._px(start), self._px(end), self.pixel_size)

    def with_point(self, name: str, x: float, y: float) -> DetectedFeatures:
        """A copy with ``name`` moved to ``(x, y)`` (a person's correction)."""
        f = replace(self[name], px=(float(x), float(y)), reason="")
        return replace(self, features={**self.features, name: f})

    def to_keypoints(self, filename: str, source: str | None = None) -> list[Keypoint]:
        """Found features as keypoint rows (the CSV that labelling and evaluation read)."""
        src = self.source if source is None else source
        return [Keypoint(filename, f.name, f.px[0], f.px[1], self.pixel_size, False, src) for f in self if f.px]


def _to_metres(a: Point, b: Point, pixel_size: float) -> Point:
    return ((b[0] - a[0]) * pixel_size, -(b[1] - a[1]) * pixel_size)


def default_min_size(shape: tuple[int, int]) -> int:
    """Objects smaller than this are noise: 1e-4 of the image area, at least 32 px (157 px at 1024x1536)."""
    return max(32, round(1e-4 * shape[0] * shape[1]))


def resolve_pixel_size(image: Any, pixel_size: float | None) -> float:
    """``pixel_size`` if given, else the image metadata's; never a silent default."""
    if pixel_size is None:
        meta = getattr(image, "metadata", None)
        pixel_size = getattr(meta, "pixel_size", None)
    if pixel_size is None:
        raise ValueError(
            "no pixel size: pass pixel_size= (metres per pixel) or an image whose metadata has one; "
            "offsets in metres cannot be computed without it"
        )
    if not (isinstance(pixel_size, (int, float)) and math.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be a positive number of metres per pixel, got {pixel_size!r}")
    return float(pixel_size)


def detect_features(
    image: Any,
    model: Any = None,
    features: Iterable[str | FeatureSpec] | None = None,
    pixel_size: float | None = None,
    point: Point | None = None,
    *,
    mask: np.ndarray | None = None,
    class_map: ClassMap | None = None,
    min_size: int | None = None,
    filter: bool = True,
    source: str = "",
) -> DetectedFeatures:
    """Locate ``features`` (default: the whole catalogue) in ``image``.

    The class mask comes from ``model.predict(image)`` or is given as ``mask`` (then no model
    is needed and ``image`` may be None). Objects below ``min_size`` pixels are ignored
    (default :func:`default_min_size`). With ``filter`` the object closest to ``point`` (default
    the image centre) is used; without it, the largest. ``point`` is also the reference of the
    ``LandingPost`` rule. A feature that cannot be found has ``px=None`` and a reason.
    """
    specs = [get_feature(f) for f in (CATALOGUE.values() if features is None else features)]
    ps = resolve_pixel_size(image, pixel_size)
    if mask is None:
        if model is None:
            raise ValueError("detect_features needs a model or a mask")
        array = getattr(image, "data", image)
        mask = model.predict(np.asarray(array)).mask
        class_map = class_map or model.class_map
        source = source or str(getattr(model, "name", "") or getattr(model, "backend", "model"))
    mask = _check_mask(mask, image)
    class_map = class_map or ClassMap.default()
    h, w = mask.shape
    centre = ((w - 1) / 2, (h - 1) / 2)
    reference = point if point is not None else centre
    locator = _Locator(mask, class_map, default_min_size(mask.shape) if min_size is None else int(min_size),
                       reference if filter else None)
    results: dict[str, FeatureResult] = {}
    for spec in specs:
        try:
            px = centre if spec.rule == "image_centre" else _apply(spec, locator.instance(spec), reference)
            results[spec.name] = FeatureResult(spec.name, spec.class_name, spec.color, (float(px[0]), float(px[1])))
        except NotFound as e:
            results[spec.name] = FeatureResult(spec.name, spec.class_name, spec.color, None, str(e))
    return DetectedFeatures(results, (h, w), ps, mask, source or "mask")


def _check_mask(mask: np.ndarray, image: Any) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"mask must be a 2D integer class-id array, got {mask.dtype} of shape {mask.shape}")
    if image is not None:
        shape = np.shape(getattr(image, "data", image))[-2:]
        if tuple(shape) != mask.shape:
            raise ValueError(f"mask shape {mask.shape} does not match image shape {tuple(shape)}")
    if mask.dtype != np.uint8 and mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"mask values {mask.min()}..{mask.max()} are not uint8 class ids")
    return mask.astype(np.uint8, copy=False)


def _apply(spec: FeatureSpec, inst: Instance, reference: Point) -> Point:
    if spec.rule == "centroid":
        return inst.centroid()
    if spec.rule == "edge":
        return inst.edge(spec.side or "")
    if spec.rule == "corner":
        return inst.corner(spec.side or "")
    if spec.rule == "needle_tip":
        return inst.needle_tip()
    if spec.rule == "lowest":
        return inst.lowest()
    if spec.rule == "closest":
        return inst.closest(reference)
    raise ValueError(f"{spec.name}: unknown rule {spec.rule!r}")


class _Locator:
    """Per-call cache: one bounding-box pass, one selected object per class."""

    def __init__(self, mask: np.ndarray, class_map: ClassMap, min_size: int, reference: Point | None) -> None:
        self.mask, self.class_map, self.min_size, self.reference = mask, class_map, min_size, reference
        self.boxes = class_boxes(mask)
        self.cache: dict[str | None, Instance | NotFound] = {}
        self.per_class: dict[int, tuple[list[Instance], int]] = {}

    def instance(self, spec: FeatureSpec) -> Instance:
        key = spec.class_name
        if key not in self.cache:
            try:
                self.cache[key] = self._select(key)
            except NotFound as e:
                self.cache[key] = e
        found = self.cache[key]
        if isinstance(found, NotFound):
            raise found
        return found

    def _select(self, class_name: str | None) -> Instance:
        if class_name == ANY_FOREGROUND:
            ids, what = [i for i in self.class_map.ids if i != 0], "foreground"
        else:
            try:
                ids, what = [self.class_map.id_of(str(class_name))], repr(class_name)
            except KeyError:
                raise NotFound(f"class {class_name!r} is not in the class map {self.class_map.names}") from None
        present = [i for i in ids if i < len(self.boxes) and self.boxes[i] is not None]
        if not present:
            raise NotFound(f"no {what} pixels in the mask")
        candidates, largest = [], 0
        for cid in present:
            if cid not in self.per_class:
                self.per_class[cid] = find_instances(self.mask, cid, self.boxes[cid], self.min_size)
            found, biggest = self.per_class[cid]
            candidates += found
            largest = max(largest, biggest)
        if not candidates:
            raise NotFound(f"no {what} object of at least {self.min_size} px (largest: {largest} px)")
        return choose_instance(candidates, self.reference)
