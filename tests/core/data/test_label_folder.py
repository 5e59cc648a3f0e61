"""Labelling state: unchanged labels are never rewritten, proposals merge only when asked."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fibsem.core.data.label_folder import LabelFolder, merge
from napari_fibsem.core.io.classes import ClassMapError
from napari_fibsem.core.synthetic.dataset import write_dataset


def test_save_only_when_changed_and_never_an_empty_mask(tmp_path):
    write_dataset(tmp_path / "ds", 2, size=(48, 64), seed=1)
    (tmp_path / "ds" / "labels" / "synthetic_0001.tif").unlink()
    folder = LabelFolder(tmp_path / "ds")
    _, labels = folder.load(0)
    assert not folder.save(0, labels)  # unchanged
    labels[0, 0] = 2
    assert folder.save(0, labels) and not folder.save(0, labels)
    _, empty = folder.load(1)
    assert not empty.any() and not folder.save(1, empty) and not folder.is_labelled(1)
    with pytest.raises(ClassMapError, match="synthetic_0000.tif"):
        folder.save(0, np.full_like(labels, 9))
    assert folder.load(0)[1][0, 0] == 2  # the bad save left the file as it was


def test_merge_fill_and_replace():
    labels = np.array([[0, 1], [0, 2]], np.uint8)
    proposal = np.array([[3, 3], [0, 4]], np.uint8)
    assert merge(labels, proposal, "fill").tolist() == [[3, 1], [0, 2]]
    assert merge(labels, proposal, "replace").tolist() == proposal.tolist()
    with pytest.raises(ValueError, match="does not match"):
        merge(labels, proposal[:1])
