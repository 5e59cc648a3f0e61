"""The folder state both labelling tools share: position in the folder and which images are done."""

from __future__ import annotations

import shutil

import numpy as np

from napari_fibsem.core.data.keypoint_labels import KeypointLabels
from napari_fibsem.core.data.label_folder import LabelFolder
from napari_fibsem.core.synthetic.dataset import write_dataset


def test_position_and_done_marks_of_a_label_folder(tmp_path):
    write_dataset(tmp_path / "ds", 3, size=(64, 96), seed=0)
    shutil.rmtree(tmp_path / "ds" / "labels")
    folder = LabelFolder(tmp_path / "ds")
    assert len(folder) == 3 and folder.index == -1 and folder.current_name is None
    assert folder.has(0) and folder.has(2) and not folder.has(-1) and not folder.has(3)
    folder.index = 0
    assert folder.current_name == folder.images[0].name and not folder.has_previous and folder.has_next
    folder.index = 2
    assert folder.has_previous and not folder.has_next
    _, labels = folder.load(1)
    folder.save(1, np.ones_like(labels))
    assert [folder.is_done(i) for i in range(3)] == [False, True, False] and folder.done_count() == 1


def test_a_keypoint_image_is_done_when_every_feature_is_placed(tmp_path):
    write_dataset(tmp_path / "ds", 2, size=(64, 96), seed=0)
    (tmp_path / "ds" / "keypoints.csv").unlink(missing_ok=True)
    labels = KeypointLabels(tmp_path / "ds")
    first, second = (p.name for p in labels.images)
    labels.set_point(first, "NeedleTip", 5, 5)
    labels.set_point(first, "LamellaCentre", 9, 9)
    labels.set_point(second, "NeedleTip", 6, 6)
    assert [labels.is_done(i) for i in range(2)] == [True, False] and labels.done_count() == 1
    assert labels.is_done(1, ["NeedleTip"])
