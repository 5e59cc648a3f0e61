"""Reader, writer and sample data through a real napari viewer (Qt under Xvfb)."""

from pathlib import Path

import numpy as np
import pytest
from napari.errors import ReaderPluginError

from napari_fibsem._writer import LabelsWriteError
from napari_fibsem.core.io.imageio import ImageIOError, read_image, read_labels, write_labels

pytestmark = pytest.mark.gui


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_folder_of_mixed_sizes_round_trip(make_napari_viewer, mixed_folder, tmp_path):
    viewer = make_napari_viewer()
    layers = viewer.open(str(mixed_folder), plugin="napari-fibsem")
    assert [ly._type_string for ly in layers] == ["image", "labels"]
    image, labels = layers
    assert image.data.shape == (3, 64, 60) and image.data.dtype == np.uint16
    for i, name in enumerate(["a.tif", "b.tif", "c.tif"]):
        src = read_image(mixed_folder / name).data
        h, w = src.shape
        assert np.array_equal(image.data[i, :h, :w], src)
        assert not image.data[i, h:, :].any() and not image.data[i, :, w:].any()
    assert np.array_equal(labels.data[0, :40, :60], read_labels(mixed_folder / "labels" / "a.tif"))
    assert labels.get_color(1) is not None and tuple(np.round(labels.get_color(1)[:3], 3)) == (1.0, 0.0, 0.0)

    # edit: paint a landing post on the unlabelled image, erase image a's manipulator
    labels.data[2, 10:20, 10:20] = 3
    labels.data[0, 25:30, 2:8] = 0
    out = tmp_path / "saved_labels"
    written = labels.save(str(out), plugin="napari-fibsem")  # napari appends .tif; we write a folder
    assert sorted(Path(p).name for p in written) == ["a.tif", "b.tif", "c.tif"]
    a = read_labels(out / "a.tif")
    assert a.shape == (40, 60) and not (a == 2).any() and (a == 1).sum() == 15 * 20
    assert read_labels(out / "b.tif").shape == (64, 48)
    assert (read_labels(out / "c.tif") == 3).sum() == 100

    # and the saved labels read back equal through the reader
    for name in ["a.tif", "b.tif", "c.tif"]:
        (mixed_folder / "labels" / name).write_bytes((out / name).read_bytes())
    again = viewer.open(str(mixed_folder), plugin="napari-fibsem")[1]
    assert np.array_equal(again.data, labels.data)


def test_single_file_and_2d_writer(make_napari_viewer, mixed_folder, tmp_path):
    viewer = make_napari_viewer()
    layers = viewer.open(str(mixed_folder / "b.tif"), plugin="napari-fibsem")
    assert [ly.name for ly in layers] == ["b", "b labels"]
    assert layers[0].data.shape == (64, 48)
    assert layers[0].metadata["napari_fibsem"]["pixel_sizes"] == [2e-8]
    path = tmp_path / "one.tif"
    layers[1].save(str(path), plugin="napari-fibsem")
    assert np.array_equal(read_labels(path), layers[1].data)


def test_bad_label_value_is_refused_and_nothing_written(make_napari_viewer, mixed_folder, tmp_path):
    viewer = make_napari_viewer()
    labels = viewer.open(str(mixed_folder), plugin="napari-fibsem")[1]
    out = tmp_path / "out"
    write_labels(out / "a.tif", np.zeros((40, 60), np.uint8))
    before = _snapshot(out)
    labels.data[1, 0, 0] = 9  # not in the class map
    with pytest.raises(LabelsWriteError, match=r"b\.tif: label values \[9\]"):
        labels.save(str(out) + ".tif", plugin="napari-fibsem")
    assert _snapshot(out) == before


def test_corrupt_file_in_folder_names_it(make_napari_viewer, mixed_folder):
    (mixed_folder / "broken.tif").write_bytes(b"II*\x00garbage")
    viewer = make_napari_viewer()
    with pytest.raises((ImageIOError, ReaderPluginError)) as e:
        viewer.open(str(mixed_folder), plugin="napari-fibsem")
    error = e.value if isinstance(e.value, ImageIOError) else e.value.__cause__
    assert isinstance(error, ImageIOError), f"napari wrapped {type(e.value).__name__} around {error!r}"
    assert "broken.tif" in str(error) and "not a readable TIFF" in str(error)


def test_sample_data_opens_with_labels(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-fibsem", "synthetic_ion")
    image, labels = viewer.layers
    assert image.data.dtype == np.uint8 and labels.data.shape == image.data.shape
    assert set(np.unique(labels.data)) >= {0, 1, 2}
