"""Event prediction on whole movies: a trained heatmap net -> score map -> events -> points CSV.

Each frame is scored from a window of ``model.n_frames`` frames centred on it (the first and last
frames repeat at the movie's ends, as in training). Frames larger than ``tile`` are scored in
overlapping tiles blended with smooth weights (``core/models/tiling.py``, shared with
segmentation), so no seams show and a movie smaller than a tile is scored in one pass. Events are
the peaks of the score map (:func:`~napari_fibsem.core.events.peaks.find_events`) at the bundle's
threshold and hysteresis unless given.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_fibsem.core.device import resolve_device
from napari_fibsem.core.events.model import MIN_DISTANCE, EventModel, window_indices
from napari_fibsem.core.events.peaks import Event, find_events
from napari_fibsem.core.io.atomic import atomic_path, atomic_write_text
from napari_fibsem.core.models.tiling import (
    crop_pads,
    effective_tile_size,
    pad_to_multiple,
    predict_tiled,
    tile_starts,
)
from napari_fibsem.core.progress import ProgressCallback

"""``on_progress(frames done, frames in total)``."""

CSV_COLUMNS = ("index", "axis-0", "axis-1", "axis-2", "score")
_DEFAULT_STRIDE = 16


@dataclass
class EventPrediction:
    """A movie's event scores and the events found in them.

    ``scores`` is (T, H, W) float32 probabilities; ``events`` are sorted by score (descending).
    A cancelled run keeps the frames it finished (``frames_done``); the rest of ``scores`` is 0
    and ``events`` come from the finished frames only.
    """

    scores: np.ndarray
    events: list[Event]
    threshold: float
    hysteresis: float
    frames_done: int
    cancelled: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def points(self) -> np.ndarray:
        """``N x 3`` float array of (frame, y, x), in the order of ``events``."""
        return np.array([[e.frame, e.y, e.x] for e in self.events], dtype=np.float64).reshape(-1, 3)

    def to_csv(self, path: str | Path, score: bool = True) -> Path:
        """Write the events as a napari points CSV (``index, axis-0, axis-1, axis-2[, score]``), atomically.

        Axes are (frame, y, x). ``score=False`` leaves the score column out: the file is then an
        annotation CSV that :func:`~napari_fibsem.core.events.points.read_points` (and so
        ``events extract``) reads, e.g. to correct predictions and train on them.
        """
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS if score else CSV_COLUMNS[:-1])
        for i, e in enumerate(self.events):
            row = [i, e.frame, f"{e.y:.3f}", f"{e.x:.3f}"]
            writer.writerow([*row, f"{e.score:.5f}"] if score else row)
        atomic_write_text(path, buf.getvalue())
        return Path(path)


def read_events_csv(path: str | Path) -> list[Event]:
    """Events back from :meth:`EventPrediction.to_csv` (with its score column; size is not kept)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    try:
        return [
            Event(int(float(r["axis-0"])), float(r["axis-1"]), float(r["axis-2"]), float(r["score"]), 0)
            for r in rows
        ]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not an events CSV with columns {', '.join(CSV_COLUMNS)} ({e})") from None


def model_stride(model: EventModel) -> int:
    """The size multiple the net works on (``2**depth`` for the heatmap U-Net): tiles start on it."""
    stride = getattr(model, "stride", None)
    if stride:
        return int(stride)
    depth = (getattr(model.module, "config", None) or {}).get("depth")
    return 2 ** int(depth) if depth else _DEFAULT_STRIDE


def predict_movie(
    stack: np.ndarray,
    model: EventModel,
    *,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 8,
    device: str | None = None,
    threshold: float | None = None,
    hysteresis: float | None = None,
    min_distance: int | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EventPrediction:
    """Score every frame of a (T, [C,] H, W) movie and find its events.

    ``tile`` and ``overlap`` are in pixels (the tile is rounded down to a multiple of the net's
    stride); ``batch_size`` tiles go through the net at once, from several frames when a frame
    holds fewer tiles. ``on_progress(done, total)`` is called after each batch of frames and
    ``should_stop()`` before each: when it says stop, the frames done so far come back with
    ``cancelled=True``. The model's module is moved to ``device`` (default: CUDA when available).
    """
    stack = np.asarray(stack)
    if stack.ndim not in (3, 4) or min(stack.shape) < 1:
        raise ValueError(f"expected a (T, H, W) or (T, C, H, W) movie, got shape {stack.shape}")
    n_frames = int(model.n_frames)
    if n_frames < 1 or n_frames % 2 == 0:
        raise ValueError(f"the model's window must be an odd number of frames, got {n_frames}")
    t_total, h, w = stack.shape[0], stack.shape[-2], stack.shape[-1]
    threshold = float(model.threshold if threshold is None else threshold)
    hysteresis = float(model.hysteresis if hysteresis is None else hysteresis)
    stride = model_stride(model)
    if min_distance is None:
        min_distance = int(getattr(model, "min_distance", MIN_DISTANCE))

    movie = np.asarray(model.normalise(stack), dtype=np.float32)
    if movie.ndim == 3:
        movie = movie[:, None]  # (T, C, H, W) from here on
    movie, pads = pad_to_multiple(movie, stride)
    ph, pw = movie.shape[-2:]
    tile_px = effective_tile_size(tile, stride)
    tiles_per_frame = len(tile_starts(ph, min(tile_px, ph), overlap, stride)) * len(
        tile_starts(pw, min(tile_px, pw), overlap, stride)
    )
    frames_per_call = max(1, -(-batch_size // tiles_per_frame))

    dev = resolve_device(device or None)
    module = model.module.to(dev).eval()

    def infer(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = module(torch.from_numpy(batch).to(dev))
            return torch.sigmoid(logits.float()).cpu().numpy()

    scores = np.zeros((t_total, h, w), np.float32)
    done, cancelled = 0, False
    while done < t_total:
        if should_stop is not None and should_stop():
            cancelled = True
            break
        frames = range(done, min(t_total, done + frames_per_call))
        windows = np.stack([movie[window_indices(t, t_total, n_frames)].reshape(-1, ph, pw) for t in frames])
        probs = predict_tiled(windows, infer, num_classes=1, tile_size=tile_px, overlap=overlap / tile_px,
                              stride=stride, batch_size=batch_size)  # fmt: skip
        scores[frames.start : frames.stop] = crop_pads(probs[:, 0], pads)
        done = frames.stop
        if on_progress is not None:
            on_progress(done, t_total)
    events = find_events(scores[:done], threshold, hysteresis, min_distance) if done else []
    meta = {
        "tile": tile_px,
        "overlap": overlap,
        "stride": stride,
        "n_frames": n_frames,
        "device": str(dev),
    }
    return EventPrediction(scores, events, threshold, hysteresis, done, cancelled, meta)


def predict_file(
    path: str | Path,
    bundle_path: str | Path,
    out_dir: str | Path,
    *,
    threshold: float | None = None,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 8,
    device: str | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[EventPrediction, dict[str, Path]]:
    """Predict a TIFF movie with a bundle; write ``<name>_scores.tif`` and ``<name>_events.csv`` to ``out_dir``.

    The movie is read like ``events extract`` reads it (T, [C,] Y, X from its axes). Both files
    are written atomically and only when the run finished: a cancelled run writes nothing and
    comes back with ``cancelled=True`` and an empty dict of paths.
    """
    import tifffile

    from napari_fibsem.core.events.ingest import read_stack
    from napari_fibsem.core.events.model import load_event_bundle

    path, out_dir = Path(path), Path(out_dir)
    stack, _ = read_stack(path)
    model = load_event_bundle(bundle_path)
    result = predict_movie(stack, model, tile=tile, overlap=overlap, batch_size=batch_size, device=device,
                           threshold=threshold, on_progress=on_progress, should_stop=should_stop)  # fmt: skip
    if result.cancelled:
        return result, {}
    result.metadata.update({"movie": str(path), "model": str(bundle_path), "threshold": result.threshold,
                            "hysteresis": result.hysteresis, "events": len(result.events)})  # fmt: skip
    name = path.name.split(".")[0]
    paths = {"scores": out_dir / f"{name}_scores.tif", "events": out_dir / f"{name}_events.csv"}
    with atomic_path(paths["scores"]) as tmp:
        tifffile.imwrite(
            tmp, result.scores, photometric="minisblack", metadata={"axes": "TYX", **result.metadata}
        )
    result.to_csv(paths["events"])
    return result, paths
