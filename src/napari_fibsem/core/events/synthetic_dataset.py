"""Synthetic event datasets on disk, laid out as ``events extract`` reads a lab's movies.

A newcomer without annotated movies of their own can run the whole event pipeline on these
(``napari-fibsem events synth``, and the demo). The folder written::

    out/db_manual.yaml                    metadata shared by every dataset (cell line, microscope ...)
    out/day1/db_manual.yaml               this dataset's own keys (its date)
    out/day1/cell_000.ome.tif             OME-TIFF movie (T, Y, X), pixel size and frame interval inside
    out/day1/cell_000.csv                 napari points CSV: the annotated split events

Movies come from :func:`~.synthetic_movie.synthetic_movie`: blobs that drift, some *split* (the
events, annotated on the split frame and the next, as a person would) and some *blink* (unannotated
distractors). Seeded: the same arguments give the same files. The folder is built beside ``out``
and renamed into place, so an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import yaml

from napari_fibsem.core.events.ingest import MANUAL
from napari_fibsem.core.events.points import EventPoint
from napari_fibsem.core.events.synthetic_movie import synthetic_movie
from napari_fibsem.core.io.atomic import atomic_dir

SHARED_METADATA = {
    "contributor": "napari-fibsem events synth",
    "cell_line": "synthetic",
    "microscope": "simulated",
    "event_type": "division",
    "comment": "blobs that split (annotated events) or blink (distractors, not annotated)",
}
FIRST_DATE = dt.date(2026, 1, 5)


@dataclass(frozen=True)
class SyntheticEventsSummary:
    folder: Path
    datasets: int
    movies: int
    events: int
    frames: int
    size: tuple[int, int]
    seed: int

    def __str__(self) -> str:
        return (
            f"wrote {self.movies} synthetic movies ({self.frames} frames of {self.size[0]}x{self.size[1]}) "
            f"in {self.datasets} dataset(s) with {self.events} annotated split events to {self.folder}"
        )


def write_points_csv(path: Path, points: list[EventPoint]) -> None:
    """A napari points CSV (``index,axis-0,axis-1,axis-2`` = frame, y, x), as napari's Save layer writes it."""
    rows = ["index,axis-0,axis-1,axis-2"] + [
        f"{i},{p.frame},{p.y:.3f},{p.x:.3f}" for i, p in enumerate(points)
    ]
    path.write_text("\n".join(rows) + "\n")


def write_event_movies(
    out: str | Path,
    n: int = 12,
    seed: int = 0,
    frames: int = 24,
    size: tuple[int, int] = (128, 160),
    events: int = 3,
    datasets: int = 2,
    blobs: int | None = None,
    blinks: int = 2,
) -> SyntheticEventsSummary:
    """Write ``n`` annotated movies (``events`` split events each) over ``datasets`` dataset folders.

    ``out`` must not exist or be empty. Movies are dealt to the datasets in turn (``day1``, ``day2``
    ...), each dataset dated a day after the previous one in its own ``db_manual.yaml``. ``blobs``
    (default: 8, or enough for the events and blinks) drift in every movie.
    """
    out = Path(out)
    if n < 1 or datasets < 1 or events < 0 or frames < 8 or min(size) < 32:
        raise ValueError(f"need n >= 1, datasets >= 1, events >= 0, frames >= 8 and 32x32 or more, "
                         f"got n={n}, datasets={datasets}, events={events}, frames={frames}, size={size}")  # fmt: skip
    blobs = max(8, events + blinks) if blobs is None else blobs
    if blobs < events:
        raise ValueError(f"{events} events need at least as many blobs, got {blobs}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: exists and is not empty; choose another folder or delete it")
    with atomic_dir(out) as tmp:
        names = [f"day{d + 1}" for d in range(min(datasets, n))]
        (tmp / MANUAL).write_text(
            yaml.safe_dump({**SHARED_METADATA, "extra": {"seed": seed}}, sort_keys=False)
        )
        for d, name in enumerate(names):
            (tmp / name).mkdir()
            (tmp / name / MANUAL).write_text(yaml.safe_dump({"date": FIRST_DATE + dt.timedelta(days=d)}))
        seeds = np.random.SeedSequence(seed).generate_state(n)
        total = 0
        for i, movie_seed in enumerate(seeds):
            movie = synthetic_movie(
                int(movie_seed), frames=frames, size=size, blobs=blobs, splits=events, blinks=blinks
            )
            folder = tmp / names[i % len(names)]
            _write_movie(
                folder / f"cell_{i:03d}.ome.tif", movie.stack, movie.pixel_size, movie.frame_interval
            )
            write_points_csv(folder / f"cell_{i:03d}.csv", movie.points)
            total += len(movie.events)
    return SyntheticEventsSummary(out, len(names), n, total, frames, size, seed)


def _write_movie(path: Path, stack: np.ndarray, pixel_size_m: float, interval_s: float) -> None:
    """An OME-TIFF whose metadata ``events extract`` reads (pixel size in µm, frames per second)."""
    um = pixel_size_m * 1e6
    meta = {"axes": "TYX", "PhysicalSizeX": um, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": um,
            "PhysicalSizeYUnit": "µm", "TimeIncrement": interval_s, "TimeIncrementUnit": "s"}  # fmt: skip
    tifffile.imwrite(path, stack, ome=True, metadata=meta)
