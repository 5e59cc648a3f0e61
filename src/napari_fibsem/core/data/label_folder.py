"""Segmentation labelling state for a dataset folder: which images are labelled, load, save, proposals.

The labelling widget is a view over this. Saving is atomic and skipped when the labels equal what
is on disk (navigating through a folder never rewrites files nobody touched). Model proposals are
kept apart from labels (``proposals/`` or in memory) and only become labels when accepted, with
``fill`` (only unlabelled pixels) or ``replace``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from napari_fibsem.core.data.dataset import label_path_for
from napari_fibsem.core.data.image_folder_state import ImageFolderState
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.imageio import FibsemImage, read_image, read_labels, write_labels

MergeMode = Literal["fill", "replace"]
PROPOSALS = "proposals"


class LabelFolder(ImageFolderState):
    """The images of ``folder`` with labels in ``labels/`` and model proposals in ``proposals/``."""

    def __init__(self, folder: str | Path, class_map: ClassMap | None = None) -> None:
        super().__init__(folder)
        self.class_map = class_map or ClassMap.for_folder(self.folder)
        self._saved: dict[int, np.ndarray | None] = {}  # what is on disk, as last read or written

    def label_path(self, i: int) -> Path:
        return label_path_for(self.images[i])

    def proposal_path(self, i: int) -> Path:
        return label_path_for(self.images[i], self.folder / PROPOSALS)

    def is_labelled(self, i: int) -> bool:
        return self.label_path(i).is_file()

    def is_done(self, i: int) -> bool:
        return self.is_labelled(i)

    def has_proposal(self, i: int) -> bool:
        return self.proposal_path(i).is_file()

    def load(self, i: int) -> tuple[FibsemImage, np.ndarray]:
        """Image ``i`` and its labels (zeros when unlabelled); errors name the file."""
        image = read_image(self.images[i], convert="mean")
        path = self.label_path(i)
        if path.is_file():
            labels = read_labels(path, self.class_map, shape=image.data.shape)
            self._saved[i] = labels.copy()
        else:
            labels = np.zeros(image.data.shape, np.uint8)
            self._saved[i] = None
        return image, labels

    def is_changed(self, i: int, labels: np.ndarray) -> bool:
        """Whether ``labels`` differ from the file (no file: whether anything is labelled)."""
        saved = self._saved.get(i)
        if saved is None:
            return bool(np.any(labels))
        return saved.shape != labels.shape or not np.array_equal(saved, labels)

    def save(self, i: int, labels: np.ndarray) -> bool:
        """Write ``labels`` for image ``i`` if they differ from the file; True when written.

        An all-background mask for an unlabelled image is not written: opening an image and
        moving on must not mark it labelled.
        """
        labels = np.asarray(labels)
        if not self.is_changed(i, labels):
            return False
        labels = labels.astype(np.uint8, copy=False)
        write_labels(self.label_path(i), labels, self.class_map)
        self._saved[i] = labels.copy()
        return True

    def proposal(self, i: int, shape: tuple[int, int]) -> np.ndarray | None:
        path = self.proposal_path(i)
        return read_labels(path, self.class_map, shape=shape) if path.is_file() else None

    def discard_proposal(self, i: int) -> None:
        self.proposal_path(i).unlink(missing_ok=True)


def merge(labels: np.ndarray, proposal: np.ndarray, mode: MergeMode = "fill") -> np.ndarray:
    """Labels with ``proposal`` accepted: ``fill`` only unlabelled (0) pixels, or ``replace`` all."""
    if labels.shape != proposal.shape:
        raise ValueError(f"proposal shape {proposal.shape} does not match labels {labels.shape}")
    if mode == "replace":
        return proposal.astype(labels.dtype, copy=True)
    if mode != "fill":
        raise ValueError(f"mode must be 'fill' or 'replace', not {mode!r}")
    return np.where(labels == 0, proposal, labels).astype(labels.dtype, copy=False)
