"""Validation metrics from one confusion matrix accumulated over the whole validation set.

Averaging per-batch IoUs over-weights small batches and classes that happen to be missing from a
batch; summing counts first and dividing once gives the dataset IoU, and with DDP the matrices of
all processes are simply added.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.training.losses import IGNORE


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``num_classes x num_classes`` int64 counts, rows = true class, columns = predicted.

    Pixels whose target is :data:`~napari_fibsem.core.training.losses.IGNORE` are skipped.
    """
    valid = target != IGNORE
    t = target[valid].to(torch.int64)
    p = pred[valid].to(torch.int64)
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


@dataclass(frozen=True)
class SegmentationMetrics:
    """Metrics of a confusion matrix. Per-class values are None for a class that appears neither in
    the labels nor in the predictions (its IoU is undefined); means skip those classes."""

    confusion: np.ndarray
    class_map: ClassMap

    @property
    def _ids(self) -> list[int]:
        return [i for i in self.class_map.ids if i < self.confusion.shape[0]]

    def _per_class(self, dice: bool) -> dict[str, float | None]:
        cm = self.confusion.astype(np.float64)
        tp = np.diag(cm)
        fp = cm.sum(axis=0) - tp
        fn = cm.sum(axis=1) - tp
        out: dict[str, float | None] = {}
        for i in self._ids:
            denom = (2 * tp[i] + fp[i] + fn[i]) if dice else (tp[i] + fp[i] + fn[i])
            num = 2 * tp[i] if dice else tp[i]
            out[self.class_map[i].name] = float(num / denom) if denom > 0 else None
        return out

    @property
    def iou(self) -> dict[str, float | None]:
        """Intersection over union per class name."""
        return self._per_class(dice=False)

    @property
    def dice(self) -> dict[str, float | None]:
        """Dice (F1) per class name."""
        return self._per_class(dice=True)

    @property
    def pixel_accuracy(self) -> float | None:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else None

    def _mean(self, values: Mapping[str, float | None], foreground: bool) -> float | None:
        names = [self.class_map[i].name for i in self._ids if not (foreground and i == 0)]
        vals = [values[n] for n in names if values[n] is not None]
        return float(np.mean(vals)) if vals else None

    @property
    def mean_iou(self) -> float | None:
        return self._mean(self.iou, foreground=False)

    @property
    def mean_fg_iou(self) -> float | None:
        """Mean IoU over the foreground classes (all ids but 0) that occur."""
        return self._mean(self.iou, foreground=True)

    @property
    def mean_fg_dice(self) -> float | None:
        return self._mean(self.dice, foreground=True)

    def to_dict(self) -> dict[str, float | None]:
        """Flat, JSON-safe: summary values plus ``iou/<class>`` and ``dice/<class>``."""
        out: dict[str, float | None] = {
            "pixel_accuracy": self.pixel_accuracy,
            "mean_iou": self.mean_iou,
            "mean_fg_iou": self.mean_fg_iou,
            "mean_fg_dice": self.mean_fg_dice,
        }
        out.update({f"iou/{k}": v for k, v in self.iou.items()})
        out.update({f"dice/{k}": v for k, v in self.dice.items()})
        return {k: (None if v is None or math.isnan(v) else v) for k, v in out.items()}


def compute_metrics(confusion: np.ndarray | torch.Tensor, class_map: ClassMap) -> SegmentationMetrics:
    """Wrap a confusion matrix (torch or numpy) for reading metrics off it."""
    if isinstance(confusion, torch.Tensor):
        confusion = confusion.detach().cpu().numpy()
    return SegmentationMetrics(np.asarray(confusion, dtype=np.int64), class_map)
