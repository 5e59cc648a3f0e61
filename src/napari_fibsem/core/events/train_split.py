"""The event crops of a training set, loaded: frames, target maps, annotated events, source movie.

Shared by the event trainer (``train``) and its evaluation (``evaluate``), so the evaluation can
take crops without importing the trainer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import tifffile

from napari_fibsem.core.events.crops import group_points
from napari_fibsem.core.events.event_record import EVENT_FILE, read_event_record
from napari_fibsem.core.events.model import as_tchw, normalise
from napari_fibsem.core.events.points import EventPoint
from napari_fibsem.core.events.training_sets import SET_FILE, read_set
from napari_fibsem.core.training.data import TrainingSetupError

Truth = list[tuple[int, float, float]]


@dataclass(frozen=True)
class MovieSource:
    """The movie a crop was cut from, its point CSV, and the least (frames, height, width) it must have."""

    movie: Path
    points: Path | None = None
    extent: tuple[int, int, int] = (0, 0, 0)


def source_of(meta: Mapping[str, Any]) -> MovieSource | None:
    """The source movie an ``event.yaml`` records (None when it records none)."""
    folder, source = (meta.get("metadata") or {}).get("source_folder"), meta.get("source")
    if not folder or not source:
        return None
    frames, box = meta.get("frames") or [0, -1], meta.get("box") or {}
    points = Path(folder) / meta["points_file"] if meta.get("points_file") else None
    extent = (int(frames[1]) + 1, int(box.get("y1", 0)), int(box.get("x1", 0)))
    return MovieSource(Path(folder) / PurePosixPath(source).name, points, extent)


def event_truth(points: Sequence[EventPoint]) -> Truth:
    """One (first frame, mean y, mean x) per event, points grouped as ``events extract`` groups them."""
    return [(min(p.frame for p in g), float(np.mean([p.y for p in g])), float(np.mean([p.x for p in g])))
            for g in group_points(list(points))]  # fmt: skip


@dataclass
class Crop:
    """One event folder, loaded: normalised frames, target maps and the annotated events."""

    id: str
    label: str
    images: np.ndarray  # (T, C, H, W) float32, normalised
    target: np.ndarray  # (T, H, W) float32 in [0, 1]
    truth: list[tuple[int, float, float]]  # one (frame, y, x) per event: its first annotated frame
    source: MovieSource | None = None  # the movie it was cut from, as event.yaml records it


def load_split(set_folder: str | Path, part: str) -> list[Crop]:
    """The crops of one split (``train``, ``val`` or ``test``) of a training set."""
    record = read_set(set_folder)
    out = []
    for event_id in record.get("events", {}).get(part, []):
        folder = Path(record["folders"][event_id])
        try:
            meta = read_event_record(folder / EVENT_FILE).model_dump()
            images = as_tchw(tifffile.imread(folder / "images.tif"))
            gt = as_tchw(tifffile.imread(folder / "ground_truth.tif").astype(np.float32))
        except (OSError, ValueError) as e:  # EventRecordError is a ValueError
            raise TrainingSetupError(
                f"{folder}: cannot read event {event_id} of {Path(set_folder) / SET_FILE} ({e})"
            ) from None
        if images.shape != gt.shape:
            raise TrainingSetupError(
                f"{folder}: images {images.shape} and ground truth {gt.shape} differ in shape"
            )
        truth = event_truth([EventPoint(int(f), float(y), float(x)) for f, y, x in meta.get("points") or []])
        label = str(meta.get("label", "event"))
        out.append(Crop(event_id, label, normalise(images), gt.max(axis=1), truth, source_of(meta)))
    return out
