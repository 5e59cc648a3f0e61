import numpy as np
import pytest
import torch

from napari_fibsem.core.data.dataset import DatasetError, SegmentationDataset, discover, split, validate
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.imageio import write_image, write_labels


def test_discover_pairs_and_unlabelled(mixed_folder):
    index = discover(mixed_folder)
    assert [s.name for s in index.samples] == ["a.tif", "b.tif", "c.tif"]
    assert [s.name for s in index.unlabelled] == ["c.tif"]
    assert index.labelled[0].label == mixed_folder / "labels" / "a.tif"
    assert index.summary() == "3 images, 2 labelled, 1 unlabelled"
    validate(index, ClassMap.default())


def test_discover_several_folders_and_explicit_label_dirs(tmp_path, mixed_folder):
    other = tmp_path / "other"
    write_image(other / "z.tiff", np.zeros((8, 8), np.uint8))
    write_labels(tmp_path / "other_labels" / "z.tif", np.ones((8, 8), np.uint8))  # .tif label for a .tiff image
    index = discover([mixed_folder, other], [mixed_folder / "labels", tmp_path / "other_labels"])
    assert len(index.samples) == 4 and index.samples[-1].label == tmp_path / "other_labels" / "z.tif"
    with pytest.raises(DatasetError, match="2 image folders but 1 label folders"):
        discover([mixed_folder, other], [mixed_folder / "labels"])
    with pytest.raises(DatasetError, match="no TIFF images"):
        discover(tmp_path)


def test_validate_lists_every_bad_file(mixed_folder):
    write_labels(mixed_folder / "labels" / "a.tif", np.full((40, 60), 9, np.uint8))
    write_labels(mixed_folder / "labels" / "b.tif", np.zeros((10, 10), np.uint8))
    before = {p: p.read_bytes() for p in mixed_folder.rglob("*.tif")}
    with pytest.raises(DatasetError) as e:
        validate(discover(mixed_folder), ClassMap.default())
    msg = str(e.value)
    assert "2 problem(s)" in msg
    assert "a.tif: label values [9]" in msg and "b.tif: labels are 10x10 but the image is 64x48" in msg
    assert before == {p: p.read_bytes() for p in mixed_folder.rglob("*.tif")}, "validation modified files"


def test_split_seeded_and_grouped():
    items = list(range(50))
    a = split(items, (0.8, 0.2), seed=3)
    assert a == split(items, (0.8, 0.2), seed=3) and a != split(items, (0.8, 0.2), seed=4)
    assert sorted(a[0] + a[1]) == items and len(a[1]) == 10
    assert a[0] != sorted(a[0]) or a[1] != list(range(40, 50)), "split must shuffle"
    groups = [i // 5 for i in items]  # 10 groups of 5
    train, val, test = split(items, (0.6, 0.2, 0.2), seed=0, groups=groups)
    gsets = [{groups[i] for i in part} for part in (train, val, test)]
    assert not (gsets[0] & gsets[1] or gsets[0] & gsets[2] or gsets[1] & gsets[2])
    assert [len(p) for p in (train, val, test)] == [30, 10, 10]
    with pytest.raises(ValueError, match="sum to 1"):
        split(items, (0.5, 0.4))


def test_torch_dataset_normalises_and_augments_reproducibly(mixed_folder):
    samples = discover(mixed_folder).labelled

    def flip(image, mask, rng):
        return (image[:, ::-1], mask[:, ::-1]) if rng.random() < 0.5 else (image, mask)

    ds = SegmentationDataset(samples, transform=flip, seed=1)
    x, y = ds[1]
    assert x.dtype == torch.float32 and x.shape == (1, 64, 48) and y.dtype == torch.int64 and y.shape == (64, 48)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0  # uint16 image scaled by 65535
    raw_img, raw_mask = ds.load(1)
    flipped = bool(torch.equal(y, torch.from_numpy(raw_mask[:, ::-1].astype(np.int64).copy())))
    assert flipped or torch.equal(y, torch.from_numpy(raw_mask.astype(np.int64)))
    # mask stays aligned with the image through the transform
    expected = raw_img[:, ::-1] if flipped else raw_img
    assert torch.allclose(x[0], torch.from_numpy(expected.astype(np.float32) / 65535))
    assert torch.equal(ds[1][1], y), "same epoch and index must give the same augmentation"
    epochs = set()
    for e in range(8):
        ds.set_epoch(e)
        epochs.add(bool(torch.equal(ds[1][1], y)))
    assert epochs == {True, False}, "augmentation should vary across epochs"
    with pytest.raises(DatasetError, match="have no labels"):
        SegmentationDataset(discover(mixed_folder).samples)
