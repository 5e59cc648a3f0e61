"""Ingest annotated movies: stacks + point CSVs + metadata -> one folder per event crop.

Layout read: a parent folder of dataset folders; each holds TIFF/OME-TIFF stacks and napari point
CSVs named after them (``cell1.ome.tif`` with ``cell1.csv`` or ``cell1_points.csv``), and
``db_manual.yaml`` files anywhere from the parent down (the innermost wins, key by key). Written:
``out/<dataset>/dataset.yaml`` and ``out/<dataset>/<event id>/{images.tif, ground_truth.tif,
event.yaml}``. Everything is read and checked before anything is written, and each folder is
built beside its target and renamed into place, so bad input leaves no partial output.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from napari_fibsem.core.errors import FibsemError
from napari_fibsem.core.events.crops import EventCrop, cut, event_crops, negative_crops
from napari_fibsem.core.events.event_record import EVENT_FILE, Box, EventRecord
from napari_fibsem.core.events.ground_truth import gaussian_maps
from napari_fibsem.core.events.points import EventPoint, check_inside, read_points
from napari_fibsem.core.io.atomic import atomic_dir, atomic_write_text

MANUAL = "db_manual.yaml"
_TIME_AXES = ("T", "Q", "I", "Z")  # plain stacks come as Q/I/Z: their pages are frames


class EventsError(FibsemError, ValueError):
    """An event dataset cannot be ingested; the message names the file and the problem."""


class ManualMetadata(BaseModel):
    """Keys of ``db_manual.yaml``; anything lab-specific goes under ``extra``."""

    model_config = ConfigDict(extra="forbid")
    contributor: str | None = None
    cell_line: str | list[str] | None = None
    microscope: str | None = None
    date: dt.date | None = None
    event_type: str | list[str] | None = None
    channels: list[str] | None = None
    fps: float | None = None
    pixel_size_um: float | None = None
    objective: str | None = None
    temperature_c: float | None = None
    comment: str | None = None
    extra: dict[str, Any] | None = None


def read_stack(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """A movie as (T, Y, X) or (T, C, Y, X) plus what its OME metadata says."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            data, axes = series.asarray(), series.axes.upper()
            ome = tif.ome_metadata
    except (OSError, ValueError, tifffile.TiffFileError) as e:
        raise EventsError(f"{path}: cannot read the stack ({e})") from None
    if "S" in axes:
        raise EventsError(f"{path}: RGB stacks are not supported (axes {axes}); save one channel per plane")
    time = next((a for a in _TIME_AXES if a in axes), None)
    if time is None or data.ndim < 3:
        raise EventsError(f"{path}: no time axis (axes {axes}, shape {data.shape}); expected T, Y, X [and C]")
    order = [axes.index(time)] + ([axes.index("C")] if "C" in axes else []) + [axes.index("Y"), axes.index("X")]
    if len(order) != data.ndim:
        raise EventsError(f"{path}: unsupported axes {axes} (shape {data.shape}); expected T, [C,] Y, X")
    data = np.transpose(data, order)
    return data, _ome_info(ome)


def _ome_info(ome: str | None) -> dict[str, Any]:
    if not ome:
        return {}
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(ome)
    except ET.ParseError:
        return {}
    pixels = next((el for el in root.iter() if el.tag.endswith("Pixels")), None)
    if pixels is None:
        return {}
    info: dict[str, Any] = {k: int(pixels.get(k)) for k in ("SizeT", "SizeC", "SizeY", "SizeX") if pixels.get(k)}
    size, unit = pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit", "µm")
    if size:
        scale = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3}.get(unit)
        if scale is not None:
            info["pixel_size_um"] = float(size) * scale
    step, tunit = pixels.get("TimeIncrement"), pixels.get("TimeIncrementUnit", "s")
    if step and float(step) > 0:
        seconds = float(step) * {"s": 1.0, "ms": 1e-3, "min": 60.0}.get(tunit, 1.0)
        info["fps"] = 1.0 / seconds
    names = [c.get("Name") for c in pixels if c.tag.endswith("Channel") and c.get("Name")]
    if names:
        info["channels"] = names
    return info


def manual_metadata(folder: Path, root: Path) -> dict[str, Any]:
    """``db_manual.yaml`` from ``root`` down to ``folder`` merged (innermost wins); errors name the file."""
    merged: dict[str, Any] = {}
    parts = folder.relative_to(root).parts
    for d in [root] + [root.joinpath(*parts[: i + 1]) for i in range(len(parts))]:
        f = d / MANUAL
        if not f.is_file():
            continue
        try:
            data = yaml.safe_load(f.read_text()) or {}
            checked = ManualMetadata.model_validate(data)
        except yaml.YAMLError as e:
            raise EventsError(f"{f}: not valid YAML ({e})") from None
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            raise EventsError(f"{f}: invalid metadata: {problems}") from None
        merged.update(checked.model_dump(exclude_unset=True, mode="json"))
    return merged


@dataclass
class Movie:
    stack_path: Path
    csv_path: Path
    stack: np.ndarray
    points: list[EventPoint]
    ome: dict[str, Any]


@dataclass
class IngestSummary:
    datasets: int = 0
    movies: int = 0
    events: int = 0
    negatives: int = 0
    folders: list[Path] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"{self.events} event and {self.negatives} negative crops from {self.movies} movie(s) "
                f"in {self.datasets} dataset(s)")  # fmt: skip


def _csv_for(stack: Path) -> Path | None:
    stem = stack.name.split(".")[0]
    for name in (f"{stem}.csv", f"{stem}_points.csv"):
        if (stack.parent / name).is_file():
            return stack.parent / name
    return None


def load_dataset(folder: Path) -> list[Movie]:
    """Every annotated movie in ``folder``, read and checked (points inside their stack)."""
    movies = []
    for stack_path in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff")):
        csv_path = _csv_for(stack_path)
        if csv_path is None:
            continue
        stack, ome = read_stack(stack_path)
        points = read_points(csv_path)
        check_inside(points, stack.shape, csv_path)
        movies.append(Movie(stack_path, csv_path, stack, points, ome))
    return movies


def ingest(
    parent: str | Path,
    out: str | Path,
    size: int = 256,
    frames_before: int = 2,
    frames_after: int = 2,
    sigma: float = 2.0,
    auto_negatives: int = 0,
    seed: int = 0,
) -> IngestSummary:
    """Cut every annotated event (and ``auto_negatives`` negatives per movie) into event folders."""
    parent, out = Path(parent), Path(out)
    if not parent.is_dir():
        raise EventsError(f"{parent}: not a folder")
    folders = [parent, *sorted(p for p in parent.rglob("*") if p.is_dir() and not _inside(p, out))]
    plans = []
    for folder in folders:  # read and check everything first
        movies = load_dataset(folder)
        if movies:
            plans.append((folder, manual_metadata(folder, parent), movies))
    if not plans:
        raise EventsError(f"{parent}: no stacks with a point CSV beside them (e.g. cell1.tif + cell1.csv)")
    summary = IngestSummary(datasets=len(plans))
    for folder, manual, movies in plans:
        target = out / (folder.relative_to(parent).as_posix().replace("/", "__") or parent.name)
        meta = {**{k: v for m in movies for k, v in m.ome.items()}, **manual, "source_folder": str(folder.resolve())}
        target.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target / "dataset.yaml", yaml.safe_dump(meta, sort_keys=False))
        for movie in movies:
            summary.movies += 1
            source = movie.stack_path.relative_to(parent).as_posix()
            crops = event_crops(movie.points, movie.stack.shape, size, frames_before, frames_after)
            negs = negative_crops(crops, movie.stack.shape, auto_negatives, size, seed=seed + summary.movies)
            gt = gaussian_maps(movie.stack.shape, movie.points, sigma)
            for crop in crops + negs:
                summary.folders.append(_write_event(target, source, movie, crop, gt, meta, sigma))
            summary.events += len(crops)
            summary.negatives += len(negs)
    return summary


def _inside(p: Path, out: Path) -> bool:
    try:
        p.resolve().relative_to(out.resolve())
        return True
    except ValueError:
        return False


def _write_event(target: Path, source: str, movie: Movie, crop: EventCrop, gt: np.ndarray, meta: dict, sigma: float) -> Path:
    event_id = crop.id(source)
    final = target / event_id
    with atomic_dir(final) as tmp:
        tifffile.imwrite(tmp / "images.tif", cut(movie.stack, crop))
        tifffile.imwrite(tmp / "ground_truth.tif", cut(gt, crop))
        record = EventRecord(
            id=event_id,
            label=crop.label,
            source=source,
            points_file=movie.csv_path.name,
            frames=list(crop.frames),
            event_frames=list(crop.event_frames) if crop.event_frames else None,
            box=Box(y0=crop.box[0], x0=crop.box[1], y1=crop.box[2], x1=crop.box[3]),
            points=[(int(f), float(y), float(x)) for f, y, x in crop.local_points()],
            sigma=sigma,
            metadata=meta,
        )
        (tmp / EVENT_FILE).write_text(record.to_yaml())
    return final
