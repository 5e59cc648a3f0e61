import json

import numpy as np
import pytest
import tifffile

from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.imageio import (
    ImageIOError,
    ImageMetadata,
    list_tiffs,
    read_image,
    read_labels,
    write_image,
    write_labels,
)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_round_trip_with_metadata(tmp_path, dtype):
    data = np.random.default_rng(1).integers(0, np.iinfo(dtype).max, (33, 47), dtype=dtype)
    meta = ImageMetadata(pixel_size=2.5e-8, beam_type="ion", timestamp="2026-11-22T10:00:00Z", extra={"hfw": 3.8e-5})
    write_image(tmp_path / "x.tif", data, meta)
    back = read_image(tmp_path / "x.tif")
    assert back.data.dtype == dtype and np.array_equal(back.data, data)
    assert back.metadata == meta
    assert not list(tmp_path.glob(".*")), "temporary file left behind"


def test_plain_tiff_without_metadata(tmp_path):
    data = np.arange(12, dtype=np.uint8).reshape(3, 4)
    tifffile.imwrite(tmp_path / "plain.tif", data, description="acquired by something else")
    img = read_image(tmp_path / "plain.tif")
    assert np.array_equal(img.data, data) and img.metadata == ImageMetadata()


def test_foreign_json_description_keeps_our_fields(tmp_path):
    data = np.zeros((4, 4), np.uint8)
    tifffile.imwrite(tmp_path / "j.tif", data, description=json.dumps({"napari_fibsem": {"pixel_size": "1e-8", "beam_type": "ION_BEAM", "hfw": 1}}))
    meta = read_image(tmp_path / "j.tif").metadata
    assert meta.pixel_size == 1e-8 and meta.beam_type == "ion" and meta.extra == {"hfw": 1}


def test_ome_tiff_pixel_size_and_singleton_axes(tmp_path):
    data = np.random.default_rng(0).integers(0, 65535, (1, 1, 20, 30), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "o.ome.tif", data, metadata={"axes": "TCYX", "PhysicalSizeX": 0.02, "PhysicalSizeXUnit": "µm"})
    img = read_image(tmp_path / "o.ome.tif")
    assert img.data.shape == (20, 30) and np.array_equal(img.data, data[0, 0])
    assert img.metadata.pixel_size == pytest.approx(2e-8)


def test_rgb_and_stacks_error_or_convert(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 1] = 200
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with pytest.raises(ImageIOError, match=r"rgb\.tif: is an RGB"):
        read_image(tmp_path / "rgb.tif")
    assert read_image(tmp_path / "rgb.tif", convert="luminance").data[0, 0] == round(200 * 0.587)
    stack = np.stack([np.full((8, 8), v, np.uint8) for v in (10, 20, 60)])
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    with pytest.raises(ImageIOError, match=r"stack\.tif: is a 3D stack"):
        read_image(tmp_path / "stack.tif")
    assert read_image(tmp_path / "stack.tif", convert="mean").data[0, 0] == 30
    assert read_image(tmp_path / "stack.tif", convert="first").data[0, 0] == 10
    tifffile.imwrite(tmp_path / "vol.tif", np.zeros((2, 3, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(ImageIOError, match="4D stack"):
        read_image(tmp_path / "vol.tif", convert="mean")
    planar = np.zeros((3, 8, 8), np.uint8)
    planar[1] = 100
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    with pytest.raises(ImageIOError, match="RGB"):
        read_image(tmp_path / "planar.tif")
    assert read_image(tmp_path / "planar.tif", convert="first").data.shape == (8, 8)


def test_bad_files_name_the_file(tmp_path):
    good = tmp_path / "good.tif"
    write_image(good, np.ones((16, 16), np.uint8))
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[:60])
    empty = tmp_path / "empty.tif"
    empty.touch()
    notiff = tmp_path / "notes.tif"
    notiff.write_text("hello")
    for path, problem in [(truncated, "not a readable TIFF"), (empty, "empty"), (notiff, "not a readable TIFF"), (tmp_path / "missing.tif", "does not exist")]:
        with pytest.raises(ImageIOError) as e:
            read_image(path)
        assert str(path) in str(e.value) and problem in str(e.value)
    f32 = tmp_path / "f32.tif"
    tifffile.imwrite(f32, np.random.default_rng(0).random((8, 8), dtype=np.float32))
    with pytest.raises(ImageIOError, match=r"f32\.tif: unsupported pixel type float32"):
        read_image(f32)
    i32 = tmp_path / "i32.tif"
    tifffile.imwrite(i32, np.zeros((8, 8), np.int32))
    with pytest.raises(ImageIOError, match="unsupported pixel type int32"):
        read_image(i32)


def test_labels_checked_against_class_map_and_shape(tmp_path):
    p = tmp_path / "labels" / "l.tif"
    lab = np.zeros((10, 10), np.uint8)
    lab[2, 2] = 9
    with pytest.raises(ValueError, match=r"l\.tif: label values \[9\]"):
        write_labels(p, lab, ClassMap.default())
    assert not p.exists(), "a refused label must not be written"
    write_labels(p, lab)  # without a class map any uint8 is fine
    with pytest.raises(ValueError, match=r"l\.tif: label values \[9\]"):
        read_labels(p, ClassMap.default())
    with pytest.raises(ImageIOError, match=r"l\.tif: labels are 10x10 but the image is 10x12"):
        read_labels(p, shape=(10, 12))
    with pytest.raises(ImageIOError, match="do not fit uint8"):
        write_labels(tmp_path / "big.tif", np.full((3, 3), 300, np.int32))


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    p = tmp_path / "keep.tif"
    write_image(p, np.full((8, 8), 7, np.uint8))
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", boom)
    with pytest.raises(OSError, match="disk full"):
        write_image(p, np.zeros((8, 8), np.uint8))
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["keep.tif"]


def test_write_refuses_bad_arrays(tmp_path):
    with pytest.raises(ImageIOError, match="3D"):
        write_image(tmp_path / "a.tif", np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(ImageIOError, match="float64"):
        write_image(tmp_path / "a.tif", np.zeros((3, 4)))
    with pytest.raises(ImageIOError, match=r"\.tif or \.tiff"):
        write_image(tmp_path / "a.png", np.zeros((3, 4), np.uint8))
    assert not list(tmp_path.iterdir())


def test_list_tiffs_natural_order(tmp_path):
    for name in ["img10.tif", "img2.TIFF", "img1.tif", "notes.txt", ".hidden.tif"]:
        (tmp_path / name).touch()
    assert [p.name for p in list_tiffs(tmp_path)] == ["img1.tif", "img2.TIFF", "img10.tif"]
