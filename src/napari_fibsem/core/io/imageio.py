"""2D TIFF images and label masks with FIB-SEM metadata.

Metadata (pixel size in metres, beam type, timestamp, anything else) travels as JSON in the TIFF
ImageDescription, so every tool that reads TIFF still opens the file. Plain TIFFs and OME-TIFFs
without our metadata read too (OME physical pixel size is picked up). Every problem raises one
:class:`ImageIOError` naming the file; writes are atomic.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile

from napari_fibsem.core.errors import FibsemError
from napari_fibsem.core.io.atomic import atomic_path
from napari_fibsem.core.io.classes import ClassMap

TIFF_SUFFIXES = (".tif", ".tiff")
_META_KEY = "napari_fibsem"
BeamType = Literal["electron", "ion"]
Convert = Literal["error", "first", "mean", "luminance"]


class ImageIOError(FibsemError, ValueError):
    """An image or label file cannot be used; the message names the file and the problem."""


@dataclass
class ImageMetadata:
    """What a FIB-SEM frame needs beyond its pixels; ``extra`` holds anything else (JSON-able)."""

    pixel_size: float | None = None  # metres per pixel
    beam_type: BeamType | None = None
    timestamp: str | None = None  # ISO 8601
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({_META_KEY: asdict(self)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageMetadata:
        known = {k: data.get(k) for k in ("pixel_size", "beam_type", "timestamp")}
        extra = dict(data.get("extra") or {})
        extra.update({k: v for k, v in data.items() if k not in {*known, "extra"}})
        if known["pixel_size"] is not None:
            known["pixel_size"] = float(known["pixel_size"])
        if known["beam_type"] is not None:
            beam = str(known["beam_type"]).lower()
            known["beam_type"] = {"electron_beam": "electron", "ion_beam": "ion"}.get(beam, beam)
        return cls(**known, extra=extra)


@dataclass
class FibsemImage:
    """A 2D image and its metadata."""

    data: np.ndarray
    metadata: ImageMetadata = field(default_factory=ImageMetadata)


def is_tiff(path: str | Path) -> bool:
    return Path(path).suffix.lower() in TIFF_SUFFIXES


def list_tiffs(folder: str | Path) -> list[Path]:
    """TIFF files directly in ``folder`` (not sub-folders), sorted naturally (img2 before img10)."""
    files = [p for p in Path(folder).iterdir() if p.is_file() and is_tiff(p) and not p.name.startswith(".")]
    return sorted(files, key=_natural_key)


def image_folder(folder: str | Path) -> list[Path]:
    """The TIFFs of ``folder`` (see :func:`list_tiffs`); a missing folder or one without images is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder of images")
    images = list_tiffs(folder)
    if not images:
        raise ValueError(f"{folder}: no TIFF images found")
    return images


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


# -- reading ----------------------------------------------------------------------------------


def _read_raw(path: Path) -> tuple[np.ndarray, str, str, dict[str, Any]]:
    if not path.exists():
        raise ImageIOError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise ImageIOError(f"{path}: file is empty (0 bytes)")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            data = series.asarray()
            axes = series.axes
            page = tif.pages.first
            description = page.description or ""
            ome = _ome_pixel_size(tif.ome_metadata) if tif.is_ome else {}
    except Exception as e:  # tifffile raises many types for damaged files
        raise ImageIOError(f"{path}: not a readable TIFF ({type(e).__name__}: {e})") from None
    return data, axes, description, ome


def _ome_pixel_size(ome_xml: str | None) -> dict[str, Any]:
    """Physical pixel size from OME-XML, in metres."""
    if not ome_xml:
        return {}
    m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', ome_xml)
    if not m:
        return {}
    unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', ome_xml)
    scale = {"m": 1.0, "mm": 1e-3, "µm": 1e-6, "um": 1e-6, "nm": 1e-9, "pm": 1e-12}.get(
        unit.group(1) if unit else "µm", 1e-6
    )
    return {"pixel_size": float(m.group(1)) * scale}


def _parse_description(description: str) -> ImageMetadata:
    try:
        data = json.loads(description)
    except (json.JSONDecodeError, TypeError):
        return ImageMetadata()
    if isinstance(data, dict) and isinstance(data.get(_META_KEY), dict):
        return ImageMetadata.from_dict(data[_META_KEY])
    return ImageMetadata()


def _to_2d(data: np.ndarray, axes: str, path: Path, convert: Convert) -> np.ndarray:
    data = np.asarray(data)
    # drop singleton axes (OME often writes T=C=Z=1)
    keep = [i for i, n in enumerate(data.shape) if n != 1]
    if len(keep) < data.ndim:
        axes = "".join(axes[i] for i in keep) if len(axes) == data.ndim else axes
        data = data.reshape([data.shape[i] for i in keep]) if keep else data.reshape(1, 1)
    if data.ndim == 2:
        return data
    if data.ndim == 3 and len(axes) == 3 and "S" in axes:  # planar RGB stores samples first
        data = np.moveaxis(data, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    is_rgb = data.ndim == 3 and data.shape[-1] in (3, 4) and (axes.endswith("S") or data.shape[0] > 4)
    what = f"an RGB(A) image of shape {data.shape}" if is_rgb else f"a {data.ndim}D stack of shape {data.shape} (axes {axes!r})"
    if convert == "error" or data.ndim != 3:
        raise ImageIOError(
            f"{path}: is {what}; FIB-SEM images must be 2D grayscale"
            + ("" if data.ndim != 3 else " (pass convert='luminance', 'mean' or 'first' to convert explicitly)")
        )
    if convert == "first":
        return data[..., 0] if is_rgb else data[0]
    stack = data[..., :3].astype(np.float64) if is_rgb else data.astype(np.float64)
    if convert == "luminance" and is_rgb:
        out = stack @ np.array([0.299, 0.587, 0.114])
    else:
        out = stack.mean(axis=-1 if is_rgb else 0)
    return np.round(out).astype(data.dtype)


def read_image(path: str | Path, convert: Convert = "error") -> FibsemImage:
    """Read a 2D uint8/uint16 TIFF with its metadata.

    RGB images and stacks raise unless ``convert`` says how to reduce them to 2D.
    Other integer types are rejected (float images are accepted when their values are
    integral and fit uint16, as some exporters write those).
    """
    path = Path(path)
    data, axes, description, ome = _read_raw(path)
    data = _to_2d(data, axes, path, convert)
    data = _check_image_dtype(data, path)
    meta = _parse_description(description)
    if meta.pixel_size is None and "pixel_size" in ome:
        meta.pixel_size = ome["pixel_size"]
    return FibsemImage(data, meta)


def _check_image_dtype(data: np.ndarray, path: Path) -> np.ndarray:
    if data.dtype in (np.uint8, np.uint16):
        return data
    if data.dtype == bool:
        return data.astype(np.uint8) * 255
    if np.issubdtype(data.dtype, np.floating) and data.size and np.all(np.isfinite(data)):
        if data.min() >= 0 and data.max() <= 65535 and np.all(data == np.round(data)):
            return data.astype(np.uint16 if data.max() > 255 else np.uint8)
    raise ImageIOError(
        f"{path}: unsupported pixel type {data.dtype}; expected uint8 or uint16 grayscale"
    )


def read_labels(path: str | Path, class_map: ClassMap | None = None, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a uint8 class-index label TIFF, checked against ``class_map`` and the image ``shape``."""
    path = Path(path)
    data, axes, _, _ = _read_raw(path)
    data = _to_2d(data, axes, path, "error")
    if not np.issubdtype(data.dtype, np.integer):
        raise ImageIOError(f"{path}: labels must be integer class ids, found {data.dtype}")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise ImageIOError(f"{path}: label values {int(data.min())}..{int(data.max())} do not fit uint8 class ids")
    data = data.astype(np.uint8, copy=False)
    if shape is not None and tuple(data.shape) != tuple(shape):
        raise ImageIOError(f"{path}: labels are {data.shape[0]}x{data.shape[1]} but the image is {shape[0]}x{shape[1]}")
    if class_map is not None:
        class_map.check_mask(data, path)
    return data


# -- writing ----------------------------------------------------------------------------------


def write_image(path: str | Path, data: np.ndarray, metadata: ImageMetadata | None = None) -> Path:
    """Write a 2D uint8/uint16 image with metadata, atomically."""
    path = Path(path)
    data = np.asarray(data)
    if data.ndim != 2:
        raise ImageIOError(f"{path}: refusing to write {data.ndim}D data {data.shape}; images are 2D")
    if data.dtype not in (np.uint8, np.uint16):
        raise ImageIOError(f"{path}: refusing to write {data.dtype}; images are uint8 or uint16")
    meta = metadata or ImageMetadata()
    _write_tiff(path, data, meta.to_json())
    return path


def write_labels(path: str | Path, labels: np.ndarray, class_map: ClassMap | None = None) -> Path:
    """Write a uint8 class-index TIFF atomically, after checking it against ``class_map``."""
    path = Path(path)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ImageIOError(f"{path}: refusing to write {labels.ndim}D labels {labels.shape}; labels are 2D")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ImageIOError(f"{path}: labels must be integer class ids, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ImageIOError(f"{path}: label values {int(labels.min())}..{int(labels.max())} do not fit uint8")
    if class_map is not None:
        class_map.check_mask(labels, path)
    _write_tiff(path, labels.astype(np.uint8, copy=False), None)
    return path


def _write_tiff(path: Path, data: np.ndarray, description: str | None) -> None:
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise ImageIOError(f"{path}: file name must end in .tif or .tiff")
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, description=description, metadata=None, compression="zlib")
