"""Predict label masks for a folder (or list) of TIFFs with any :class:`SegmentationModel`.

The loop behind ``napari-fibsem predict`` and the labelling widget's "predict all": it writes
uint8 class-index TIFFs beside the images (``labels/``, the dataset-folder layout) atomically,
never replaces an existing label file unless asked (it may be a person's manual labels), and
keeps going past an unreadable image, reporting every failure at the end so one bad file among
500 doesn't cost the other 499. Progress goes to a callback and ``should_stop`` cancels between
batches, so a widget can run it off the UI thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from napari_fibsem.core.data.dataset import label_path_for
from napari_fibsem.core.io.atomic import atomic_path
from napari_fibsem.core.io.imageio import ImageIOError, image_folder, is_tiff, read_image, write_labels
from napari_fibsem.core.progress import ProgressCallback


@dataclass
class PredictSummary:
    """What a run did with each image: written, skipped (label existed) or failed (with the reason)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    cancelled: bool = False
    done: int = 0
    """Images dealt with so far (skipped ones included), of ``total``."""
    total: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        text = f"wrote {len(self.written)} label file(s)"
        if self.skipped:
            text += f", skipped {len(self.skipped)} with existing labels (overwrite to replace them)"
        if self.failed:
            text += f", {len(self.failed)} image(s) failed"
        if self.cancelled:
            text += " (cancelled before the end)"
        return text


def collect_images(images: str | Path | Sequence[str | Path]) -> list[Path]:
    """Folders -> their TIFFs (natural order, not ``labels/``); files -> themselves, checked to be TIFFs."""
    entries = [images] if isinstance(images, (str, Path)) else list(images)
    if not entries:
        raise ValueError("no images given")
    paths: list[Path] = []
    for entry in map(Path, entries):
        if entry.is_dir():
            paths += image_folder(entry)
        elif not entry.is_file():
            raise FileNotFoundError(f"{entry}: no such folder or file")
        elif not is_tiff(entry):
            raise ValueError(f"{entry}: not a TIFF file (.tif/.tiff)")
        else:
            paths.append(entry)
    return paths


def label_targets(images: Sequence[Path], out_dir: str | Path | None = None) -> list[Path]:
    """Where each image's labels go; refuses targets that collide with each other or with an image."""
    targets = [label_path_for(p, out_dir) for p in images]
    seen: dict[Path, Path] = {}
    image_set = {p.resolve() for p in images}
    for image, target in zip(images, targets):
        key = target.resolve()
        if key in image_set:
            raise ValueError(
                f"{target}: the labels of {image} would overwrite an input image; choose another output folder"
            )
        if key in seen:
            raise ValueError(f"{seen[key]} and {image} would both write labels to {target} (same file name)")
        seen[key] = image
    return targets


def existing_label(target: Path) -> Path | None:
    """An existing label for ``target`` under either TIFF suffix (``x.tif`` also guards ``x.tiff``)."""
    for cand in (target, target.with_suffix(".tif"), target.with_suffix(".tiff")):
        if cand.is_file():
            return cand
    return None


def predict_folder(
    model,
    images: str | Path | Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    overwrite: bool = False,
    batch_size: int = 1,
    probs_dir: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PredictSummary:
    """Segment every image and write its uint8 label TIFF; returns what happened to each file.

    ``model`` is any :class:`~napari_fibsem.core.models.SegmentationModel` (``load_model``).
    Labels go to ``out_dir/<name>`` or, by default, ``<image folder>/labels/<name>``. Images with
    an existing label file are skipped unless ``overwrite``. Unreadable images are recorded in
    ``summary.failed`` and the run continues. ``batch_size`` images are read and predicted
    together. ``probs_dir`` also saves float32 ``C x H x W`` probabilities there.
    ``on_progress(done, total)`` runs after each batch; ``should_stop()`` returning True ends
    the run after the current batch (``summary.cancelled``).
    """
    summary = PredictSummary()
    for summary in iter_predict_folder(model, images, out_dir, overwrite=overwrite, batch_size=batch_size,
                                       probs_dir=probs_dir):  # fmt: skip
        if on_progress is not None:
            on_progress(summary.done, summary.total)
        if should_stop is not None and summary.done < summary.total and should_stop():
            summary.cancelled = True
            break
    return summary


def iter_predict_folder(
    model,
    images: str | Path | Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    overwrite: bool = False,
    batch_size: int = 1,
    probs_dir: str | Path | None = None,
) -> Iterator[PredictSummary]:
    """:func:`predict_folder` as a generator, for background workers: yields the run's summary
    once the existing labels are counted and after each batch (``done`` of ``total``); a caller
    that stops iterating ends the run after the current batch."""
    paths = collect_images(images)
    targets = label_targets(paths, out_dir)
    summary = PredictSummary(total=len(paths))
    todo: list[tuple[Path, Path]] = []
    for image, target in zip(paths, targets):
        if not overwrite and existing_label(target) is not None:
            summary.skipped.append(image)
        else:
            todo.append((image, target))
    summary.done = summary.total - len(todo)
    yield summary
    step = max(1, int(batch_size))
    for start in range(0, len(todo), step):
        chunk = todo[start : start + step]
        loaded = []
        for image, target in chunk:
            try:
                loaded.append((image, target, read_image(image).data))
            except (ImageIOError, OSError) as e:
                summary.failed.append((image, str(e)))
        if loaded:
            _predict_and_write(model, loaded, probs_dir, summary)
        summary.done += len(chunk)
        yield summary


def _predict_and_write(
    model, loaded: list[tuple[Path, Path, np.ndarray]], probs_dir, summary: PredictSummary
) -> None:
    predictions = model.predict_batch([data for _, _, data in loaded])
    for (image, target, _), pred in zip(loaded, predictions, strict=True):
        try:
            write_labels(target, pred.mask)
            if probs_dir is not None:
                with atomic_path(Path(probs_dir) / image.name) as tmp:
                    tifffile.imwrite(
                        tmp,
                        np.asarray(pred.probs, dtype=np.float32),
                        compression="zlib",
                        metadata={"axes": "CYX"},
                    )
        except (ImageIOError, OSError) as e:
            summary.failed.append((image, f"{target}: cannot write ({e})"))
            continue
        summary.written.append(target)

