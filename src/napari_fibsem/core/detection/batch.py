"""Detect features in many images (``napari-fibsem detect``): a keypoints CSV plus optional pictures.

The output is the same keypoints CSV that labelling and evaluation read, so a model's detections
can be opened in the keypoint labelling widget, corrected, and used as ground truth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_fibsem.core.detection.detect import detect_features
from napari_fibsem.core.detection.draw import draw_features
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.imageio import ImageIOError, read_image, read_labels
from napari_fibsem.core.io.keypoints import Keypoint


@dataclass
class DetectSummary:
    points: list[Keypoint] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    images: int = 0
    missing: dict[str, int] = field(default_factory=dict)  # feature -> images where it was not found

    def __str__(self) -> str:
        text = f"{len(self.points)} point(s) in {self.images} image(s)"
        if self.missing:
            text += "; not found: " + ", ".join(f"{k} in {v}" for k, v in sorted(self.missing.items()))
        if self.failed:
            text += f"; {len(self.failed)} image(s) failed"
        return text


def detect_images(
    images: Sequence[Path],
    model: Any = None,
    masks_dir: Path | None = None,
    features: Sequence[str] | None = None,
    pixel_size: float | None = None,
    min_size: int | None = None,
    draw_dir: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> DetectSummary:
    """Locate ``features`` in each image from ``model`` or from same-named masks in ``masks_dir``.

    ``pixel_size`` is used only for images whose metadata has none. A bad image is reported in
    ``failed`` and the rest go on.
    """
    if (model is None) == (masks_dir is None):
        raise ValueError("give either a model or a folder of masks")
    class_map = model.class_map if model is not None else ClassMap.for_folder(Path(masks_dir).parent)  # type: ignore[arg-type]
    summary = DetectSummary()
    for i, path in enumerate(images):
        try:
            image = read_image(path)
            mask = None
            if masks_dir is not None:
                mask = read_labels(Path(masks_dir) / path.name, class_map, shape=image.data.shape)
            ps = image.metadata.pixel_size or pixel_size
            found = detect_features(image.data, model, features, ps, mask=mask, class_map=class_map,
                                    min_size=min_size)  # fmt: skip
        except (ImageIOError, OSError, ValueError) as e:
            summary.failed.append((path, str(e)))
        else:
            summary.images += 1
            summary.points += found.to_keypoints(path.name)
            for name in found.missing:
                summary.missing[name] = summary.missing.get(name, 0) + 1
            if draw_dir is not None:
                save_png(draw_dir / f"{path.stem}.png", draw_features(image.data, found, class_map))
        if on_progress is not None:
            on_progress(i + 1, len(images))
    return summary


def save_png(path: Path, rgb) -> None:
    from PIL import Image

    from napari_fibsem.core.io.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
