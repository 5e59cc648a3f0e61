"""npe2 writer for Labels layers: uint8 class-index TIFFs.

A 2D layer becomes one TIFF. A folder's label stack (from the reader) becomes one TIFF per image,
at each image's own size, in a folder named like the requested file without its extension
(``labels.tif`` → ``labels/<image name>``): a padded stack of mixed sizes is not one TIFF.
Everything is checked before anything is written, and each file is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_fibsem._layer_meta import META_KEY
from napari_fibsem.core.errors import FibsemError
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.imageio import write_labels


class LabelsWriteError(FibsemError, RuntimeError):
    """Saving refused; napari swallows ValueErrors from writers, so this is not one."""


def write_labels_layer(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer entry point."""
    try:
        return _write(Path(path), np.asarray(data), meta.get("metadata") or {})
    except ValueError as e:
        raise LabelsWriteError(str(e)) from None


def _write(path: Path, data: np.ndarray, metadata: dict) -> list[str]:
    cm = metadata.get("class_map")
    class_map = ClassMap.from_dict(cm) if cm else None
    info = metadata.get(META_KEY) or {}
    files, shapes = info.get("files") or [], info.get("shapes") or []
    if data.ndim == 3 and data.shape[0] == 1 and len(files) <= 1:
        data = data[0]
    if data.ndim == 2:
        if len(shapes) == 1:
            data = data[: shapes[0][0], : shapes[0][1]]
        write_labels(path, data, class_map)
        return [str(path)]
    if data.ndim != 3 or not files:
        raise ValueError(f"{path}: cannot write {data.ndim}D labels {data.shape} without the images' file list")
    if data.shape[0] != len(files):
        raise ValueError(f"{path}: the layer has {data.shape[0]} slices but its folder lists {len(files)} images")
    return write_label_stack(path.with_suffix(""), data, files, shapes, info.get("labelled"), class_map)


def write_label_stack(
    out_dir: Path,
    data: np.ndarray,
    files: list[str],
    shapes: list[list[int]],
    labelled: list[bool] | None = None,
    class_map: ClassMap | None = None,
) -> list[str]:
    """Write slice i, cropped to ``shapes[i]``, to ``out_dir/files[i]``.

    A slice is written when it holds any label or had a label file before (so clearing a label is
    saved too); untouched unlabelled images get no file. All slices are checked first.
    """
    labelled = labelled or [False] * len(files)
    todo = []
    for i, (name, (h, w)) in enumerate(zip(files, shapes)):
        sl = data[i, :h, :w]
        if labelled[i] or np.any(sl):
            if class_map is not None:
                class_map.check_mask(sl, out_dir / name)
            todo.append((out_dir / name, sl))
    for target, sl in todo:
        write_labels(target, sl)
    return [str(t) for t, _ in todo]
