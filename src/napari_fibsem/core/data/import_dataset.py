"""Import a local copy of a HuggingFace image-segmentation dataset (AutoLamella's) as dataset folders.

The HuggingFace ``datasets`` library stores such a dataset as parquet shards whose ``image`` and
``annotation`` columns hold ``{bytes, path}`` structs (PNG or TIFF bytes), one folder per config
(``waffle``, ``liftout``, ``serial-liftout``) and one shard series per split
(``train-00000-of-00002.parquet``). We turn each (config, split) into one of our dataset folders,
``<out>/<config>/<split>/`` with ``labels/`` and ``classes.yaml``, so training, ``check`` and the
labelling widget use it unchanged. Shards are read in row batches (a config is several GB), and
everything is written to a hidden sibling folder first and renamed at the end, so a failure never
leaves a half-imported dataset behind.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from napari_fibsem.core._optional import require
from napari_fibsem.core.errors import FibsemError
from napari_fibsem.core.io.atomic import atomic_dir
from napari_fibsem.core.io.classes import ClassMap, ClassMapError
from napari_fibsem.core.io.imageio import ImageMetadata, write_image, write_labels
from napari_fibsem.core.progress import ProgressCallback

SUMMARY_FILE = "import_summary.yaml"
"""Written at the top of the output; ``overwrite`` only ever deletes folders that contain it."""

_SHARD = re.compile(r"^(?P<split>.+?)-\d{5}-of-\d{5}(?:-[0-9a-fA-F]+)?$")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_ROWS_PER_BATCH = 16



class ImportDatasetError(FibsemError, ValueError):
    """The source cannot be imported; the message names the file (and row) and the problem."""


@dataclass(frozen=True)
class Shard:
    """One parquet file and the (config, split) it belongs to."""

    path: Path
    config: str
    split: str


@dataclass
class ImportSummary:
    """What was written: images per ``(config, split)`` and how many RGB-but-gray images were converted."""

    out: Path
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    converted_rgb: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        parts = ", ".join(f"{c}/{s}: {n}" for (c, s), n in sorted(self.counts.items()))
        rgb = f"; {self.converted_rgb} gray RGB image(s) stored as grayscale" if self.converted_rgb else ""
        return f"imported {self.total} labelled images to {self.out} ({parts}){rgb}"


# -- finding shards ----------------------------------------------------------------------------


def find_shards(source: str | Path) -> list[Shard]:
    """All parquet shards under ``source`` (a dataset root, a hub-cache repo folder or one file).

    Config and split come from the HuggingFace layout: ``<config>/<split>-NNNNN-of-NNNNN.parquet``
    (optionally under ``data/``), ``<config>/<split>/NNNN.parquet`` (the hub's parquet
    conversion) or ``<config>/<split>.parquet``; a dataset without configs gets ``default``.
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise ImportDatasetError(f"{source}: does not exist")
    if source.is_file():
        if source.suffix.lower() != ".parquet":
            raise ImportDatasetError(f"{source}: not a .parquet file")
        folders = [p.name for p in (source.parent.parent, source.parent) if p.name]
        return [_classify(source, folders)]
    root = _snapshot_root(source)
    files = sorted(
        p
        for p in root.rglob("*.parquet")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise ImportDatasetError(
            f"{source}: no .parquet files found (expected <config>/<split>-00000-of-0000N.parquet)"
        )
    return [_classify(f, list(f.relative_to(root).parts[:-1])) for f in files]


def _snapshot_root(folder: Path) -> Path:
    """In a hub-cache repo folder (``datasets--owner--name``), the snapshot ``refs/main`` points at."""
    snapshots = folder / "snapshots"
    if not snapshots.is_dir() or not ((folder / "refs").is_dir() or (folder / "blobs").is_dir()):
        return folder
    ref = folder / "refs" / "main"
    if ref.is_file() and (snapshots / ref.read_text().strip()).is_dir():
        return snapshots / ref.read_text().strip()
    candidates = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else folder


def _classify(path: Path, folders: list[str]) -> Shard:
    folders = [f for f in folders if f != "data"]
    stem = path.stem
    if stem.isdigit():  # <config>/<split>/0000.parquet
        if not folders:
            raise ImportDatasetError(
                f"{path}: cannot tell the split of a shard named {path.name} outside a <split> folder"
            )
        split = folders[-1].removeprefix("partial-")
        config = folders[-2] if len(folders) > 1 else "default"
    else:
        m = _SHARD.match(stem)
        split = m.group("split") if m else stem
        config = folders[-1] if folders else "default"
    return Shard(path, config, split)


def _open(shard: Shard, image_column: str, label_column: str):
    """Open a shard and check its columns, so a bad file fails before anything is written."""
    pq = require("pyarrow.parquet", "hf")
    try:
        pf = pq.ParquetFile(shard.path)
        names = pf.schema_arrow.names
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for damaged files
        raise ImportDatasetError(
            f"{shard.path}: not a readable parquet file ({type(e).__name__}: {e})"
        ) from None
    missing = [c for c in (image_column, label_column) if c not in names]
    if missing:
        raise ImportDatasetError(
            f"{shard.path}: no {' or '.join(repr(c) for c in missing)} column (columns: {names}); "
            "expected an image-segmentation dataset with image and annotation columns"
        )
    return pf


# -- decoding ----------------------------------------------------------------------------------


def decode_image(data: bytes, where: str, kind: str = "image") -> tuple[np.ndarray, bool]:
    """PNG/TIFF/... bytes -> 2D array; returns ``(array, converted_from_rgb)``.

    RGB(A) whose channels are all equal is stored gray by many exporters and becomes 2D; real
    colour raises, as FIB-SEM frames and class masks have one channel.
    """
    try:
        if data[:4] in _TIFF_MAGIC:
            import tifffile

            arr = tifffile.imread(io.BytesIO(data))
        else:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                if im.mode == "P":  # palette: the indices are the class ids of a mask
                    arr = np.asarray(im) if kind == "annotation" else np.asarray(im.convert("RGBA"))
                else:
                    arr = np.asarray(im)
    except Exception as e:
        raise ImportDatasetError(
            f"{where}: cannot decode the {kind} bytes ({type(e).__name__}: {e})"
        ) from None
    arr = np.asarray(arr)
    converted = False
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] in (2, 3, 4):
        colour = arr[..., :-1] if arr.shape[-1] in (2, 4) else arr
        alpha = arr[..., -1] if arr.shape[-1] in (2, 4) else None
        if alpha is not None and np.any(alpha != _max_value(alpha)):
            raise ImportDatasetError(
                f"{where}: the {kind} has a transparent alpha channel; expected grayscale"
            )
        if colour.shape[-1] > 1 and not np.all(colour == colour[..., :1]):
            raise ImportDatasetError(
                f"{where}: the {kind} is a colour image of shape {arr.shape}; expected grayscale "
                "(channels differ, so it cannot be converted without losing information)"
            )
        arr, converted = colour[..., 0], colour.shape[-1] > 1
    if arr.ndim != 2:
        raise ImportDatasetError(f"{where}: the {kind} has shape {arr.shape}; expected a 2D grayscale image")
    return _to_supported_dtype(arr, where, kind), converted


def _max_value(a: np.ndarray) -> int | float:
    return np.iinfo(a.dtype).max if np.issubdtype(a.dtype, np.integer) else 1.0


def _to_supported_dtype(arr: np.ndarray, where: str, kind: str) -> np.ndarray:
    if arr.dtype == bool:
        return arr.astype(np.uint8) * (255 if kind == "image" else 1)
    if arr.dtype in (np.uint8, np.uint16):
        return arr
    if np.issubdtype(arr.dtype, np.integer) and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        return arr.astype(np.uint16 if arr.max() > 255 else np.uint8)  # PIL's mode "I" for 16-bit PNGs
    raise ImportDatasetError(f"{where}: the {kind} has pixel type {arr.dtype}; expected uint8 or uint16")


def _cell_bytes(cell: object, where: str, kind: str) -> tuple[bytes, str | None]:
    """``{bytes, path}`` struct or plain binary -> (bytes, stored path)."""
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return bytes(cell), None
    if isinstance(cell, dict):
        data, stored = cell.get("bytes"), cell.get("path")
        if data is None and stored and Path(stored).is_file():  # not embedded: datasets kept the path
            data = Path(stored).read_bytes()
        if data is None:
            raise ImportDatasetError(
                f"{where}: the {kind} has no embedded bytes (path {stored!r} is not readable here)"
            )
        return bytes(data), stored
    raise ImportDatasetError(
        f"{where}: the {kind} cell is {type(cell).__name__}, expected an Image struct or bytes"
    )


def _file_name(stored: str | None, config: str, split: str, index: int, taken: set[str]) -> str:
    """A stable, unique ``.tif`` name: the stored file name when there is one, else the row index."""
    fallback = f"{config}_{split}_{index:05d}.tif"
    if not stored:
        name = fallback
    else:
        stem = re.split(r"[\\/]", stored)[-1].rsplit(".", 1)[0]
        stem = re.sub(r"[^\w.\-]+", "_", stem).strip("._")
        name = f"{stem}.tif" if stem else fallback
        if name.lower() in taken:
            name = f"{stem}_{index:05d}.tif"
    if name.lower() in taken:
        raise ImportDatasetError(f"two rows of {config}/{split} would both be written as {name}")
    taken.add(name.lower())
    return name


# -- import --------------------------------------------------------------------------------------


def import_dataset(
    source: str | Path,
    out: str | Path,
    configs: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    *,
    overwrite: bool = False,
    class_map: ClassMap | None = None,
    image_column: str = "image",
    label_column: str = "annotation",
    on_progress: ProgressCallback | None = None,
) -> ImportSummary:
    """Write ``<out>/<config>/<split>/`` dataset folders from the parquet shards under ``source``.

    ``configs``/``splits`` (default: all found) select what to import; an unknown name raises an
    error listing those available. Annotation values outside ``class_map`` (default: AutoLamella's)
    raise naming the shard and row. ``out`` must be missing or empty, or, with ``overwrite``, a
    previous import (it has an ``import_summary.yaml``), which is replaced only once the new
    import is complete. ``on_progress(done, total)`` is called after each row.
    """
    out = Path(out).expanduser()
    class_map = class_map or ClassMap.default()
    shards = _select(find_shards(source), configs, splits)
    opened = [(s, _open(s, image_column, label_column)) for s in shards]
    total = sum(pf.metadata.num_rows for _, pf in opened)
    _check_out(out, overwrite)

    summary = ImportSummary(out)
    with atomic_dir(out) as tmp:
        done = 0
        names: dict[tuple[str, str], set[str]] = {}
        for shard, pf in opened:
            key = (shard.config, shard.split)
            folder = tmp / shard.config / shard.split
            taken = names.setdefault(key, set())
            if not folder.exists():
                folder.mkdir(parents=True)
                class_map.save(folder / "classes.yaml")
            row = 0
            for batch in pf.iter_batches(batch_size=_ROWS_PER_BATCH, columns=[image_column, label_column]):
                for image_cell, label_cell in zip(
                    batch.column(image_column).to_pylist(), batch.column(label_column).to_pylist()
                ):
                    where = f"{shard.path} row {row}"
                    index = summary.counts.get(key, 0)
                    converted = _import_row(
                        image_cell, label_cell, where, folder, shard, (row, index), taken, class_map
                    )
                    summary.converted_rgb += converted
                    summary.counts[key] = index + 1
                    row += 1
                    done += 1
                    if on_progress is not None:
                        on_progress(done, total)
        _write_summary(tmp, source, summary)
    return summary


def _select(shards: list[Shard], configs: Sequence[str] | None, splits: Sequence[str] | None) -> list[Shard]:
    for what, wanted, found in (
        ("config", configs, sorted({s.config for s in shards})),
        ("split", splits, sorted({s.split for s in shards})),
    ):
        unknown = sorted(set(wanted or ()) - set(found))
        if unknown:
            raise ImportDatasetError(f"no {what} named {', '.join(unknown)}; available: {', '.join(found)}")
    chosen = [s for s in shards if (not configs or s.config in configs) and (not splits or s.split in splits)]
    if not chosen:
        raise ImportDatasetError(
            f"none of the configs {list(configs or [])} has the splits {list(splits or [])}"
        )
    return chosen


def _check_out(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ImportDatasetError(f"{out}: exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise ImportDatasetError(f"{out}: exists and is not empty; choose another folder or allow overwriting (--overwrite)")
    if not (out / SUMMARY_FILE).is_file():
        raise ImportDatasetError(
            f"{out}: refusing to replace a folder that is not a previous import (no {SUMMARY_FILE}); delete it yourself"
        )


def _import_row(image_cell, label_cell, where, folder, shard, position, taken, class_map) -> bool:
    """Decode, check and write one row; ``position`` is (row in the shard, index in the split)."""
    row, index = position
    image_bytes, stored = _cell_bytes(image_cell, where, "image")
    if stored:
        where = f"{where} ({stored})"
    label_bytes, _ = _cell_bytes(label_cell, where, "annotation")
    image, converted = decode_image(image_bytes, where, "image")
    labels, _ = decode_image(label_bytes, where, "annotation")
    if labels.shape != image.shape:
        raise ImportDatasetError(
            f"{where}: annotation is {labels.shape[0]}x{labels.shape[1]} but the image is {image.shape[0]}x{image.shape[1]}"
        )
    if labels.max(initial=0) > 255:
        raise ImportDatasetError(
            f"{where}: annotation values up to {int(labels.max())} do not fit uint8 class ids"
        )
    try:
        class_map.check_mask(labels, where)
    except ClassMapError as e:
        raise ImportDatasetError(str(e)) from None
    name = _file_name(stored, shard.config, shard.split, index, taken)
    extra = {
        "source": "huggingface parquet",
        "config": shard.config,
        "split": shard.split,
        "shard": shard.path.name,
        "row": row,
    }
    if stored:
        extra["original_path"] = stored
    write_image(folder / name, image, ImageMetadata(extra=extra))
    write_labels(folder / "labels" / name, labels.astype(np.uint8))
    return converted


def _write_summary(tmp: Path, source: str | Path, summary: ImportSummary) -> None:
    data = {
        "source": str(Path(source).expanduser().resolve()),
        "datasets": [{"config": c, "split": s, "images": n} for (c, s), n in sorted(summary.counts.items())],
        "converted_rgb": summary.converted_rgb,
    }
    (tmp / SUMMARY_FILE).write_text(yaml.safe_dump(data, sort_keys=False))

