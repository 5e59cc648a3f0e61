"""npe2 reader: a FIB-SEM TIFF, several TIFFs, or a dataset folder (images + ``labels/``).

A folder becomes one image layer (a stack, images of different sizes padded at the bottom/right
with zeros) and, when any ``labels/<name>`` exists, one Labels layer coloured by the folder's
class map. Layer metadata records each slice's file and original size so the folder writer can
save every slice back to ``labels/<name>`` at its own size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_fibsem._colormap import labels_layer_kwargs
from napari_fibsem._layer_meta import META_KEY
from napari_fibsem.core.data.dataset import label_path_for
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.imageio import is_tiff, list_tiffs, read_image, read_labels

LayerData = tuple[Any, dict, str]


def get_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerData]] | None:
    """Return a reader when ``path`` is a TIFF, a list of TIFFs, or a folder holding TIFFs."""
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    if not paths:
        return None
    if len(paths) == 1 and paths[0].is_dir():
        return read_folder if list_tiffs(paths[0]) else None
    if all(is_tiff(p) for p in paths):
        return read_files
    return None


def read_folder(path: str | Sequence[str]) -> list[LayerData]:
    folder = Path(path if isinstance(path, (str, Path)) else path[0])
    layers = _read_group(list_tiffs(folder), folder)
    _follow_current_viewer()
    return layers


def _follow_current_viewer() -> None:
    """Show the file under the slider in the viewer being read into (a stack's slider has no names)."""
    try:
        import napari
    except ImportError:  # the reader used without napari (scripts)
        return
    from napari_fibsem._stack_view import follow

    follow(napari.current_viewer())


def read_files(path: str | Sequence[str]) -> list[LayerData]:
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    layers: list[LayerData] = []
    for p in paths:
        layers += _read_group([p], p.parent, name=p.stem)
    return layers


def _read_group(files: list[Path], folder: Path, name: str | None = None) -> list[LayerData]:
    class_map = ClassMap.for_folder(folder)
    images = [read_image(f) for f in files]
    shapes = [im.data.shape for im in images]
    label_files = [label_path_for(f) for f in files]
    labels = [
        read_labels(lp, class_map, shape=s) if lp.is_file() else None for lp, s in zip(label_files, shapes)
    ]
    name = name or folder.name
    meta = {
        "folder": str(folder),
        "files": [f.name for f in files],
        "shapes": [list(s) for s in shapes],
        "pixel_sizes": [im.metadata.pixel_size for im in images],
        "beam_types": [im.metadata.beam_type for im in images],
        "labelled": [lab is not None for lab in labels],
    }
    dtype = np.uint16 if any(im.data.dtype == np.uint16 for im in images) else np.uint8
    image = _stack([im.data for im in images], shapes, dtype)
    layers: list[LayerData] = [(image, {"name": name, "metadata": {META_KEY: meta}}, "image")]
    if any(lab is not None for lab in labels):
        stack = _stack([np.zeros(s, np.uint8) if lab is None else lab for lab, s in zip(labels, shapes)], shapes, np.uint8)
        kwargs = labels_layer_kwargs(class_map, f"{name} labels")
        kwargs["metadata"][META_KEY] = meta
        layers.append((stack, kwargs, "labels"))
    return layers


def _stack(arrays: list[np.ndarray], shapes: list[tuple[int, ...]], dtype) -> np.ndarray:
    """One 2D array as is; several as an (N, Hmax, Wmax) stack padded with zeros."""
    if len(arrays) == 1:
        return arrays[0].astype(dtype, copy=False)
    h = max(s[0] for s in shapes)
    w = max(s[1] for s in shapes)
    out = np.zeros((len(arrays), h, w), dtype)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0], : a.shape[1]] = a
    return out
