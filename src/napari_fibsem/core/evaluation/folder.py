"""Segmentation metrics of a model on labelled dataset folders: the demo's and
``benchmarks/train_quality.py``'s score on unseen scenes (whole images, dataset IoU)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_fibsem.core.io.imageio import read_image
from napari_fibsem.core.progress import ProgressCallback


def evaluate_folder(model, folders: str | Path | Sequence[str | Path], on_progress: ProgressCallback | None = None):
    """Segmentation metrics of ``model`` on labelled dataset folder(s), predicting whole images.

    One confusion matrix summed over every labelled image (dataset IoU, not a mean of per-image
    IoUs), read as a :class:`~napari_fibsem.core.training.metrics.SegmentationMetrics`; labels
    are checked against the model's class map. Returns ``(metrics, seconds per image)``.
    """
    import time

    from napari_fibsem.core.data.dataset import discover
    from napari_fibsem.core.io.imageio import read_labels
    from napari_fibsem.core.training.metrics import compute_metrics

    samples = discover(folders).labelled
    if not samples:
        raise ValueError(f"{folders}: no labelled images to evaluate on")
    n = model.num_classes
    confusion = np.zeros((n, n), np.int64)
    start = time.perf_counter()
    for i, sample in enumerate(samples):
        pred = model.predict(read_image(sample.image).data).mask
        true = read_labels(sample.label, model.class_map, shape=pred.shape).astype(np.int64)
        confusion += np.bincount(true.ravel() * n + pred.ravel(), minlength=n * n).reshape(n, n)
        if on_progress is not None:
            on_progress(i + 1, len(samples))
    return compute_metrics(confusion, model.class_map), (time.perf_counter() - start) / len(samples)
