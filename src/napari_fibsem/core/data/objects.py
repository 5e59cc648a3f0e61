"""Objects from class masks: instances, boxes, polygons, COCO JSON and a per-object CSV.

Class masks say *what* each pixel is; detectors (Mask R-CNN, YOLO, SAM fine-tuning) and counting
need *which object* it belongs to. An instance is a connected component of one class (class 0 is
background), so two touching objects of the same class merge: that is all a class mask can tell.

Coordinates: ``bbox`` is a half-open pixel range ``(x0, y0, x1, y1)`` (``mask[y0:y1, x0:x1]``
holds the object; ``x1 - x0`` is the COCO width), while ``centroid`` and ``polygon`` are in
array-index coordinates where pixel ``(x, y)``'s centre is at ``(x, y)`` (napari's, and the
keypoints CSV's). COCO's coordinates put that centre at ``(x + 0.5, y + 0.5)``, so polygons are
shifted by half a pixel on export. A polygon is the *outer* boundary, simplified: holes are filled
and it is approximate; ``segmentation="rle"`` is exact.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.measure import approximate_polygon, find_contours

from napari_fibsem import __version__
from napari_fibsem.core.data.components import components, structure
from napari_fibsem.core.data.dataset import discover
from napari_fibsem.core.io.atomic import atomic_write_text
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.imageio import read_image, read_labels
from napari_fibsem.core.progress import ProgressCallback

Segmentation = Literal["polygon", "rle"]
CSV_COLUMNS = ["file", "image_id", "annotation_id", "instance", "class_id", "class_name", "area",
               "x0", "y0", "x1", "y1", "centroid_x", "centroid_y"]  # fmt: skip


@dataclass(frozen=True)
class ObjectInstance:
    """One connected object of one class; see the module docstring for the coordinate conventions."""

    class_id: int
    class_name: str
    instance_id: int
    area: int
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    polygon: np.ndarray | None = field(default=None, compare=False, repr=False)
    """``(K, 2)`` float ``(x, y)`` outer boundary, at least 3 points; None when not asked for."""


def label_instances(mask: np.ndarray, min_size: int = 0, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of every non-background class, numbered 1..N across classes.

    Returns ``(instances, class_of)``: an int32 image (0 = no object) and the class id of each
    instance (``class_of[i - 1]`` for instance ``i``). Components under ``min_size`` pixels are
    dropped. 8-connectivity by default, as a diagonal step does not split a thin needle tip.
    int32 ids, so a mask with thousands of specks never wraps around.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"expected a 2D integer class mask, got {mask.ndim}D {mask.dtype}")
    structure(connectivity)  # a bad connectivity fails before any work
    instances = np.zeros(mask.shape, np.int32)
    class_of: list[np.ndarray] = []
    n = 0
    # find_objects on the class mask gives each class's bounding box: label only there
    for cid, box in enumerate(ndimage.find_objects(mask.astype(np.int32, copy=False)), start=1):
        if box is None:
            continue
        crop = mask[box] == cid
        lab, sizes, kept = components(crop, min_size, connectivity)
        new_ids = np.zeros(len(sizes), np.int32)
        new_ids[kept] = np.arange(n + 1, n + 1 + kept.size, dtype=np.int32)
        instances[box][crop] = new_ids[lab[crop]]
        class_of.append(np.full(kept.size, cid, np.int32))
        n += kept.size
    return instances, (np.concatenate(class_of) if class_of else np.zeros(0, np.int32))


def _outer_polygon(crop: np.ndarray, y0: int, x0: int, connectivity: int, tolerance: float) -> np.ndarray:
    """Outer contour of one component as ``(x, y)`` points, at least 3 of them."""
    padded = np.pad(crop, 1).astype(np.uint8)
    contours = find_contours(padded, 0.5, fully_connected="high" if connectivity == 8 else "low")
    area = [abs(np.dot(c[:-1, 0], c[1:, 1]) - np.dot(c[1:, 0], c[:-1, 1])) for c in contours]
    outer = contours[int(np.argmax(area))]  # the outer boundary encloses every hole
    simple = approximate_polygon(outer, tolerance) if tolerance > 0 else outer
    if len(simple) - 1 < 3:
        simple = outer
    return simple[:-1, ::-1] + (x0 - 1, y0 - 1)  # drop the repeated closing point; (row, col) -> (x, y)


def find_objects(
    mask: np.ndarray,
    class_map: ClassMap | None = None,
    min_size: int = 0,
    connectivity: int = 8,
    polygons: bool = True,
    tolerance: float = 0.5,
) -> list[ObjectInstance]:
    """Every object in a class mask with area, box, centroid and (optionally) its polygon.

    ``tolerance`` (pixels) simplifies polygons; 0 keeps every boundary point.
    """
    class_map = class_map or ClassMap.default()
    class_map.check_mask(mask)
    return _objects_and_instances(mask, class_map, min_size, connectivity, polygons, tolerance)[0]


def _objects_and_instances(mask, class_map, min_size, connectivity, polygons, tolerance):
    """Objects and the instance image (for RLE); ``mask`` must already agree with ``class_map``."""
    instances, class_of = label_instances(mask, min_size, connectivity)
    objects = []
    for i, box in enumerate(ndimage.find_objects(instances), start=1):
        y0, x0 = box[0].start, box[1].start
        crop = instances[box] == i
        rows, cols = np.nonzero(crop)
        cid = int(class_of[i - 1])
        poly = _outer_polygon(crop, y0, x0, connectivity, tolerance) if polygons else None
        objects.append(ObjectInstance(cid, class_map[cid].name, i, rows.size, (x0, y0, box[1].stop, box[0].stop),
                                      (x0 + float(cols.mean()), y0 + float(rows.mean())), poly))  # fmt: skip
    return objects, instances


def encode_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE ``{"counts", "size"}`` of a boolean mask: column-major runs, background first."""
    return _rle(np.asarray(mask, bool), 0, 0, mask.shape)


def _rle(crop: np.ndarray, y0: int, x0: int, shape: tuple[int, int]) -> dict:
    """RLE of a full-image mask that is False outside ``crop`` (placed at ``y0, x0``): cost ~ crop size."""
    h, w = shape
    cols, rows = np.nonzero(crop.T)  # column-major order
    idx = (cols.astype(np.int64) + x0) * h + rows + y0
    if not idx.size:
        return {"counts": [int(h * w)], "size": [int(h), int(w)]}
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts, ends = idx[np.r_[0, breaks]], idx[np.r_[breaks - 1, idx.size - 1]] + 1
    edges = np.column_stack([starts, ends]).ravel()
    return {"counts": np.diff(np.r_[0, edges, h * w]).tolist(), "size": [int(h), int(w)]}


@dataclass
class ObjectsSummary:
    """What an export found; ``str()`` is the CLI's report."""

    images: int
    annotations: int
    per_class: dict[str, int]
    unlabelled: list[Path]
    outputs: list[Path] = field(default_factory=list)

    def __str__(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in self.per_class.items()) or "none"
        text = f"{self.annotations} objects in {self.images} labelled images ({counts})"
        if self.unlabelled:
            text += f"; skipped {len(self.unlabelled)} unlabelled image(s)"
        return text + "".join(f"\nwrote {p}" for p in self.outputs)


def _collect(folder, class_map, min_size, connectivity, segmentation, tolerance, on_progress):
    """Build the COCO dict and CSV rows for a folder in memory, so bad input writes nothing."""
    if segmentation not in ("polygon", "rle"):
        raise ValueError(f"segmentation must be 'polygon' or 'rle', got {segmentation!r}")
    folder = Path(folder)
    class_map = class_map or ClassMap.for_folder(folder)
    index = discover(folder)
    samples = index.labelled
    if not samples:
        raise ValueError(f"{folder}: no labelled images (labels go in {folder / 'labels'})")
    images, annotations, rows = [], [], []
    per_class = {class_map[c].name: 0 for c in class_map.ids if c != 0}
    for image_id, sample in enumerate(samples, start=1):
        shape = read_image(sample.image).data.shape
        mask = read_labels(sample.label, class_map, shape=shape)
        objects, instances = _objects_and_instances(
            mask, class_map, min_size, connectivity, segmentation == "polygon", tolerance
        )
        name = sample.image.relative_to(folder).as_posix()
        images.append({"id": image_id, "file_name": name, "width": shape[1], "height": shape[0]})
        for obj in objects:
            x0, y0, x1, y1 = obj.bbox
            if segmentation == "polygon":
                seg = [np.round(obj.polygon + 0.5, 2).ravel().tolist()]  # COCO: pixel centre at +0.5
            else:
                seg = _rle(instances[y0:y1, x0:x1] == obj.instance_id, y0, x0, instances.shape)
            ann_id = len(annotations) + 1
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": obj.class_id,
                                "segmentation": seg, "area": float(obj.area),
                                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "iscrowd": 0})  # fmt: skip
            rows.append([name, image_id, ann_id, obj.instance_id, obj.class_id, obj.class_name, obj.area,
                         x0, y0, x1, y1, round(obj.centroid[0], 3), round(obj.centroid[1], 3)])  # fmt: skip
            per_class[obj.class_name] += 1
        if on_progress is not None:
            on_progress(image_id, len(samples))
    coco = {
        "info": {"description": f"objects from the class masks of {folder.name}", "version": __version__,
                 "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "min_size": min_size, "connectivity": connectivity},  # fmt: skip
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": class_map[cid].name, "supercategory": "fibsem"} for cid in class_map.ids if cid != 0],
    }
    summary = ObjectsSummary(len(images), len(annotations), per_class, [s.image for s in index.unlabelled])
    return coco, rows, summary


def coco_from_folder(
    folder: str | Path,
    class_map: ClassMap | None = None,
    min_size: int = 0,
    connectivity: int = 8,
    segmentation: Segmentation = "polygon",
    tolerance: float = 0.5,
    on_progress: ProgressCallback | None = None,
) -> dict:
    """COCO detection dict for a dataset folder's labelled images (background is no category).

    Unlabelled images are left out (not listed as empty images: their objects are unknown, not
    absent). A label file that is unreadable, of the wrong size or holds ids outside the class map
    (default: the folder's ``classes.yaml``) raises a ``ValueError`` naming it.
    """
    return _collect(folder, class_map, min_size, connectivity, segmentation, tolerance, on_progress)[0]


def write_objects(
    folder: str | Path,
    out: str | Path | None = None,
    csv_path: str | Path | None = None,
    class_map: ClassMap | None = None,
    min_size: int = 0,
    connectivity: int = 8,
    segmentation: Segmentation = "polygon",
    tolerance: float = 0.5,
    on_progress: ProgressCallback | None = None,
) -> ObjectsSummary:
    """Write the COCO JSON (default ``folder/objects_coco.json``) and per-object CSV (``objects.csv``).

    Everything is built first and each file is written atomically, so bad input leaves no output.
    """
    folder = Path(folder)
    coco, rows, summary = _collect(folder, class_map, min_size, connectivity, segmentation, tolerance, on_progress)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    out = Path(out) if out is not None else folder / "objects_coco.json"
    csv_path = Path(csv_path) if csv_path is not None else folder / "objects.csv"
    atomic_write_text(out, json.dumps(coco))
    atomic_write_text(csv_path, buf.getvalue())
    summary.outputs = [out, csv_path]
    return summary
