"""Keypoint labelling state: one point per feature per image, saved on every change, foreign rows kept."""

from __future__ import annotations

import pytest

from napari_fibsem.core.data.keypoint_labels import KeypointLabels
from napari_fibsem.core.io.keypoints import read_keypoints
from napari_fibsem.core.synthetic.dataset import write_dataset


def test_openfibsem_csv_is_read_kept_and_rewritten(tmp_path):
    write_dataset(tmp_path / "ds", 2, size=(64, 96), seed=0)
    csv = tmp_path / "points.csv"
    csv.write_text(
        "filename,feature,px.x,px.y,pixelsize,corrected,note\n"
        "synthetic_0000,NeedleTip,10,20,1e-8,False,tip\n"
        "elsewhere.tif,LamellaCentre,1,2,,False,\n"
    )
    labels = KeypointLabels(tmp_path / "ds", csv)
    assert labels.points("synthetic_0000.tif")["NeedleTip"].x == 10.0
    assert labels.set_point("synthetic_0001.tif", "LamellaCentre", 30, 40, 2e-8)
    rows = {(p.filename, p.feature): p for p in read_keypoints(csv)}
    assert rows["synthetic_0000.tif", "NeedleTip"].extra == {"note": "tip"}
    assert ("elsewhere.tif", "LamellaCentre") in rows  # an image not in the folder: kept
    assert rows["synthetic_0001.tif", "LamellaCentre"].pixel_size == 2e-8
    assert not labels.set_point("synthetic_0001.tif", "LamellaCentre", 30, 40)  # no change, no write


def test_moving_a_model_point_marks_it_corrected(tmp_path):
    write_dataset(tmp_path / "ds", 1, size=(64, 96), seed=0)
    (tmp_path / "ds" / "keypoints.csv").unlink()
    labels = KeypointLabels(tmp_path / "ds")
    name = labels.images[0].name
    labels.set_point(name, "NeedleTip", 5, 5, source="best")
    labels.set_point(name, "LamellaCentre", 9, 9)
    labels.set_point(name, "NeedleTip", 6, 5)
    labels.set_point(name, "LamellaCentre", 8, 9)
    pts = {p.feature: p for p in read_keypoints(labels.csv_path) if p.filename == name}
    assert pts["NeedleTip"].corrected and pts["NeedleTip"].source == "best"
    assert not pts["LamellaCentre"].corrected and pts["LamellaCentre"].source == "manual"
    labels.delete_point(name, "NeedleTip")
    assert set(KeypointLabels(tmp_path / "ds").points(name)) == {"LamellaCentre"}


def test_bad_folder_and_bad_csv_are_clear_errors(tmp_path):
    with pytest.raises(NotADirectoryError, match="nope"):
        KeypointLabels(tmp_path / "nope")
    write_dataset(tmp_path / "ds", 1, size=(64, 96), seed=0)
    (tmp_path / "ds" / "keypoints.csv").write_text("filename,feature,x\nA,B,1\n")
    with pytest.raises(ValueError, match=r"keypoints.csv: missing column"):
        KeypointLabels(tmp_path / "ds")


def test_pixel_size_is_remembered_per_image_and_written_to_its_rows(tmp_path):
    write_dataset(tmp_path / "ds", 3, size=(64, 96), seed=0)
    (tmp_path / "ds" / "keypoints.csv").unlink()
    labels = KeypointLabels(tmp_path / "ds")
    a, b, c = (p.name for p in labels.images)
    assert labels.pixel_size(a) is None
    labels.set_points(a, {"NeedleTip": (1, 2), "LamellaCentre": (3, 4)})
    assert {p.pixel_size for p in read_keypoints(labels.csv_path)} == {None}  # unknown: the column stays empty

    assert labels.set_pixel_size(a, 7.5e-9)  # typed in for an image without metadata: every row of it
    assert not labels.set_pixel_sizes({b: 2e-9, c: 2e-9})  # no rows yet: remembered, nothing to write
    labels.set_point(b, "NeedleTip", 5, 6)  # a new point takes the image's pixel size
    rows = {(p.filename, p.feature): p.pixel_size for p in read_keypoints(labels.csv_path)}
    assert rows == {(a, "NeedleTip"): 7.5e-9, (a, "LamellaCentre"): 7.5e-9, (b, "NeedleTip"): 2e-9}
    assert not labels.set_pixel_size(a, 7.5e-9)  # no change, no write

    reopened = KeypointLabels(tmp_path / "ds")  # read back from the rows
    assert (reopened.pixel_size(a), reopened.pixel_size(b), reopened.pixel_size(c)) == (7.5e-9, 2e-9, None)
    reopened.set_pixel_size(a, None)
    assert {p.pixel_size for p in read_keypoints(labels.csv_path) if p.filename == a} == {None}
    with pytest.raises(ValueError, match="positive"):
        reopened.set_pixel_size(b, 0.0)


def test_features_used_and_missing_per_image(tmp_path):
    write_dataset(tmp_path / "ds", 2, size=(64, 96), seed=0)
    (tmp_path / "ds" / "keypoints.csv").unlink()
    labels = KeypointLabels(tmp_path / "ds")
    a, b = (p.name for p in labels.images)
    labels.set_points(a, {"LamellaCentre": (1, 2), "NeedleTip": (3, 4)})
    labels.set_point(b, "LandingPost", 5, 6)
    assert labels.features_used() == ["LamellaCentre", "NeedleTip", "LandingPost"]
    assert labels.missing(b, labels.features_used()) == ["LamellaCentre", "NeedleTip"]
    assert labels.missing(a, ["NeedleTip"]) == []
    assert labels.placed() == {a: {"LamellaCentre", "NeedleTip"}, b: {"LandingPost"}}
