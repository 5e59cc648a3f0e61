"""Objects from class masks: instances, boxes, centroids, polygons, RLE, COCO export and the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from skimage.draw import disk, polygon
from typer.testing import CliRunner

from napari_fibsem.cli import app
from napari_fibsem.core.data.objects import (
    coco_from_folder,
    encode_rle,
    find_objects,
    label_instances,
    write_objects,
)
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.imageio import read_labels, write_labels
from napari_fibsem.core.synthetic.dataset import write_dataset


def _three_blobs() -> np.ndarray:
    mask = np.zeros((50, 80), np.uint8)
    mask[5:15, 10:30] = 1  # 10 x 20 = 200 px
    mask[30:40, 60:65] = 1  # 10 x 5 = 50 px, touches nothing
    mask[20:26, 40:52] = 2  # 6 x 12 = 72 px
    mask[45, 2] = 2  # a 1-pixel speck
    return mask


def _decode_rle(rle: dict) -> np.ndarray:
    """Independent decoder: alternating background/foreground runs in column-major order."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"])
    assert counts.sum() == h * w and (counts >= 0).all()
    values = np.arange(counts.size) % 2 == 1
    return np.repeat(values, counts).reshape((h, w), order="F")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("objects") / "ds"
    write_dataset(folder, n=3, size=(128, 192), seed=0)
    return folder


def test_instances_areas_boxes_centroids_and_min_size():
    objs = find_objects(_three_blobs(), min_size=2)
    assert [(o.class_id, o.class_name, o.instance_id) for o in objs] == [(1, "lamella", 1), (1, "lamella", 2), (2, "manipulator", 3)]
    assert [o.area for o in objs] == [200, 50, 72]
    assert [o.bbox for o in objs] == [(10, 5, 30, 15), (60, 30, 65, 40), (40, 20, 52, 26)]  # half-open x0, y0, x1, y1
    assert np.allclose([o.centroid for o in objs], [(19.5, 9.5), (62.0, 34.5), (45.5, 22.5)])
    # without min_size the speck is an object; a large min_size keeps only the biggest blob
    assert len(find_objects(_three_blobs())) == 4
    assert [o.area for o in find_objects(_three_blobs(), min_size=100, polygons=False)] == [200]


def test_connectivity_decides_whether_diagonal_pixels_join():
    mask = np.zeros((6, 6), np.uint8)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = 1
    assert label_instances(mask, connectivity=8)[0].max() == 1
    inst, class_of = label_instances(mask, connectivity=4)
    assert inst.max() == 3 and list(class_of) == [1, 1, 1]
    with pytest.raises(ValueError, match="4 or 8"):
        label_instances(mask, connectivity=6)


def test_hundreds_of_blobs_get_distinct_int32_ids():
    mask = np.zeros((100, 200), np.uint8)
    mask[1::4, 1::4] = 1  # 25 x 50 = 1250 separate single pixels
    inst, class_of = label_instances(mask)
    assert inst.dtype == np.int32 and len(class_of) == 1250
    ids = inst[1::4, 1::4]
    assert len(np.unique(ids)) == 1250 and ids.min() == 1 and ids.max() == 1250  # no 255 wrap-around


def test_rle_decodes_to_the_exact_instance():
    mask = _three_blobs()
    mask[disk((25, 20), 8)] = 1  # a round object with ragged edges
    mask[24:27, 18:22] = 0  # and a hole
    inst, _ = label_instances(mask)
    for i in range(1, inst.max() + 1):
        assert np.array_equal(_decode_rle(encode_rle(inst == i)), inst == i)
    corner = np.zeros((4, 3), bool)
    corner[0, 0] = corner[3, 2] = True  # foreground first and last: zero-length runs at both ends
    assert encode_rle(corner)["counts"] == [0, 1, 10, 1, 0]
    assert _decode_rle(encode_rle(np.zeros((4, 3), bool))).sum() == 0


def test_polygon_rasterises_back_onto_the_blob():
    mask = np.zeros((64, 64), np.uint8)
    mask[disk((30, 34), 14)] = 3
    (obj,) = find_objects(mask)
    assert obj.polygon.shape[1] == 2 and len(obj.polygon) >= 3
    drawn = np.zeros(mask.shape, bool)
    drawn[polygon(obj.polygon[:, 1], obj.polygon[:, 0], mask.shape)] = True
    truth = mask == 3
    assert (drawn & truth).sum() / (drawn | truth).sum() > 0.9


def test_polygon_of_an_8_connected_object_goes_round_both_corner_touching_parts():
    mask = np.zeros((30, 30), np.uint8)
    mask[5:15, 5:15] = mask[15:25, 15:25] = 1  # one object with 8-connectivity
    (obj,) = find_objects(mask, tolerance=0)
    drawn = np.zeros(mask.shape, bool)
    drawn[polygon(obj.polygon[:, 1], obj.polygon[:, 0], mask.shape)] = True
    assert (drawn & (mask == 1)).sum() / (drawn | (mask == 1)).sum() > 0.9


def _check_coco_schema(coco: dict, folder: Path) -> None:
    """COCO detection format without pycocotools: keys, types, unique ids, references, geometry."""
    assert {"info", "images", "annotations", "categories"} <= set(coco)
    json.loads(json.dumps(coco))  # plain JSON types only
    images = {im["id"]: im for im in coco["images"]}
    assert len(images) == len(coco["images"])
    for im in coco["images"]:
        assert isinstance(im["id"], int) and isinstance(im["file_name"], str)
        assert isinstance(im["width"], int) and isinstance(im["height"], int)
        assert (folder / im["file_name"]).is_file()
    cats = {c["id"] for c in coco["categories"]}
    assert len(cats) == len(coco["categories"]) and 0 not in cats
    assert all(isinstance(c["name"], str) and isinstance(c["supercategory"], str) for c in coco["categories"])
    ann_ids = [a["id"] for a in coco["annotations"]]
    assert len(set(ann_ids)) == len(ann_ids) and all(isinstance(i, int) for i in ann_ids)
    for a in coco["annotations"]:
        im = images[a["image_id"]]
        assert a["category_id"] in cats and a["iscrowd"] == 0 and a["area"] > 0
        x, y, w, h = a["bbox"]
        assert all(isinstance(v, float) for v in a["bbox"])
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"]
        seg = a["segmentation"]
        if isinstance(seg, dict):
            assert seg["size"] == [im["height"], im["width"]] and sum(seg["counts"]) == im["height"] * im["width"]
        else:
            assert seg and all(len(p) >= 6 and len(p) % 2 == 0 for p in seg)
            pts = np.asarray(seg[0]).reshape(-1, 2)
            assert (pts >= 0).all() and (pts[:, 0] <= im["width"]).all() and (pts[:, 1] <= im["height"]).all()


@pytest.mark.parametrize("segmentation", ["polygon", "rle"])
def test_coco_export_of_a_dataset_passes_the_schema(dataset, segmentation):
    coco = coco_from_folder(dataset, segmentation=segmentation)
    _check_coco_schema(coco, dataset)
    assert len(coco["images"]) == 3 and len(coco["annotations"]) >= 3
    assert [c["name"] for c in coco["categories"]] == ClassMap.for_folder(dataset).names[1:]


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools vs numpy 2
@pytest.mark.parametrize("segmentation", ["polygon", "rle"])
def test_coco_export_loads_in_pycocotools_and_masks_match(dataset, segmentation):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = coco_from_folder(dataset, segmentation=segmentation)
    coco.createIndex()
    assert len(coco.getAnnIds()) == len(coco.dataset["annotations"])
    for image_id, im in coco.imgs.items():
        inst, _ = label_instances(read_labels(dataset / "labels" / im["file_name"]))
        for k, ann in enumerate(coco.loadAnns(coco.getAnnIds(imgIds=image_id)), start=1):
            got, truth = coco.annToMask(ann).astype(bool), inst == k
            iou = (got & truth).sum() / (got | truth).sum()
            assert iou == 1.0 if segmentation == "rle" else iou > 0.9, (im["file_name"], k, iou)


def test_write_objects_writes_json_and_csv(dataset, tmp_path):
    summary = write_objects(dataset, tmp_path / "c.json", tmp_path / "o.csv", min_size=64)
    coco = json.loads((tmp_path / "c.json").read_text())
    rows = list(csv.DictReader((tmp_path / "o.csv").open()))
    assert len(rows) == len(coco["annotations"]) == summary.annotations > 0
    assert all(int(r["area"]) >= 64 for r in rows)
    first = coco["annotations"][0]
    assert rows[0]["file"] == coco["images"][0]["file_name"] and int(rows[0]["annotation_id"]) == first["id"]
    assert [int(rows[0][k]) for k in ("x0", "y0")] == first["bbox"][:2]


def test_unlabelled_images_are_left_out(dataset, tmp_path):
    folder = tmp_path / "ds"
    write_dataset(folder, n=2, size=(64, 64), seed=1)
    (folder / "labels" / "synthetic_0001.tif").unlink()
    summary = write_objects(folder)
    assert summary.images == 1 and summary.unlabelled == [folder / "synthetic_0001.tif"]
    assert "skipped 1 unlabelled" in str(summary)
    assert [im["file_name"] for im in json.loads((folder / "objects_coco.json").read_text())["images"]] == ["synthetic_0000.tif"]


@pytest.mark.parametrize("bad", ["class_id", "size", "not_tiff"])
def test_bad_label_file_names_it_and_writes_nothing(tmp_path, bad):
    folder = tmp_path / "ds"
    write_dataset(folder, n=2, size=(64, 64), seed=2)
    label = folder / "labels" / "synthetic_0001.tif"
    if bad == "class_id":
        write_labels(label, np.full((64, 64), 9, np.uint8))
    elif bad == "size":
        write_labels(label, np.zeros((32, 64), np.uint8))
    else:
        label.write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="synthetic_0001.tif"):
        write_objects(folder)
    assert not (folder / "objects_coco.json").exists() and not (folder / "objects.csv").exists()


def test_cli_objects(dataset, tmp_path):
    runner = CliRunner()
    out = tmp_path / "coco.json"
    result = runner.invoke(app, ["objects", str(dataset), "--out", str(out), "--csv", str(tmp_path / "o.csv"), "--format", "rle", "--min-size", "10"])
    assert result.exit_code == 0, result.output
    assert "objects in 3 labelled images" in result.output
    assert isinstance(json.loads(out.read_text())["annotations"][0]["segmentation"], dict)
    assert (tmp_path / "o.csv").read_text().startswith("file,image_id,annotation_id")
    bad = runner.invoke(app, ["objects", str(tmp_path / "missing")])
    assert bad.exit_code == 2 and "missing" in bad.output
