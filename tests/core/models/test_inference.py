"""``predict_folder`` and ``napari-fibsem predict``: label TIFFs for a folder of images."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from napari_fibsem.cli import app
from napari_fibsem.core.io.imageio import read_image, read_labels, write_image
from napari_fibsem.core.models import create_model, load_model, save_bundle
from napari_fibsem.core.models.inference import predict_folder
from napari_fibsem.core.synthetic.dataset import write_dataset


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("Unet", "resnet18", device="cpu", encoder_depth=3, decoder_channels=(32, 16, 8))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Three 64x96 synthetic scenes (with labels/) plus one 48x80 crop, to mix sizes."""
    folder = tmp_path_factory.mktemp("data") / "ds"
    write_dataset(folder, n=3, size=(64, 96), seed=0)
    write_image(folder / "synthetic_0003.tif", read_image(folder / "synthetic_0000.tif").data[5:53, 7:87])
    return folder


@pytest.fixture
def images(dataset, tmp_path) -> Path:
    """An image folder without labels."""
    folder = tmp_path / "images"
    folder.mkdir()
    for f in dataset.glob("*.tif"):
        shutil.copy(f, folder / f.name)
    return folder


def test_writes_labels_equal_to_predict(model, images):
    progress = []
    summary = predict_folder(model, images, on_progress=lambda d, t: progress.append((d, t)))
    files = sorted(images.glob("*.tif"))
    assert summary.ok and not summary.skipped and not summary.cancelled
    assert sorted(summary.written) == [images / "labels" / f.name for f in files]
    assert progress[0] == (0, 4) and progress[-1] == (4, 4)
    for f in files:
        image = read_image(f).data
        labels = read_labels(images / "labels" / f.name)
        assert labels.dtype == np.uint8 and labels.shape == image.shape
        np.testing.assert_array_equal(labels, model.predict(image).mask)
    assert {read_labels(images / "labels" / f.name).shape for f in files} == {(64, 96), (48, 80)}


def test_out_dir_batches_and_probabilities(model, images, tmp_path):
    files = [images / "synthetic_0001.tif", images / "synthetic_0003.tif", images / "synthetic_0002.tif"]
    summary = predict_folder(model, files, tmp_path / "out", batch_size=2, probs_dir=tmp_path / "probs")
    assert [p.name for p in summary.written] == [f.name for f in files]
    assert not (images / "labels").exists()
    import tifffile

    for f in files:
        pred = model.predict(read_image(f).data)
        probs = tifffile.imread(tmp_path / "probs" / f.name)
        assert probs.dtype == np.float32 and probs.shape == pred.probs.shape
        np.testing.assert_allclose(probs, pred.probs, atol=1e-5)
        agree = np.mean(read_labels(tmp_path / "out" / f.name) == pred.mask)
        assert agree > 0.999  # batched convolution may flip a near-tie


def test_existing_labels_untouched_without_overwrite(model, dataset, tmp_path):
    folder = tmp_path / "ds"
    shutil.copytree(dataset, folder)
    manual = folder / "labels" / "synthetic_0001.tif"
    before = {p.name: p.read_bytes() for p in (folder / "labels").glob("*.tif")}
    summary = predict_folder(model, folder)
    assert len(summary.skipped) == 3 and [p.name for p in summary.written] == ["synthetic_0003.tif"]
    assert {p.name: p.read_bytes() for p in (folder / "labels").glob("*.tif") if p.name in before} == before
    summary = predict_folder(model, folder, overwrite=True)
    assert len(summary.written) == 4 and not summary.skipped
    np.testing.assert_array_equal(
        read_labels(manual), model.predict(read_image(folder / manual.name).data).mask
    )


def test_corrupt_image_reported_and_others_written(model, images):
    (images / "broken.tif").write_bytes(b"II*\x00 not really a tiff")
    summary = predict_folder(model, images)
    assert not summary.ok and len(summary.written) == 4
    ((path, reason),) = summary.failed
    assert path == images / "broken.tif" and "broken.tif: not a readable TIFF" in reason
    assert not (images / "labels" / "broken.tif").exists()


def test_cancel_and_bad_targets(model, images):
    stop = threading.Event()

    def on_progress(done, total):
        if done >= 1:
            stop.set()

    summary = predict_folder(model, images, on_progress=on_progress, should_stop=stop.is_set)
    assert summary.cancelled and len(summary.written) == 1
    with pytest.raises(ValueError, match="would overwrite an input image"):
        predict_folder(model, images, images, overwrite=True)
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        predict_folder(model, [images / "nope.tif"])


def test_cli_predict(model, images, tmp_path):
    bundle = save_bundle(tmp_path / "model.pt", model)
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(bundle), str(images), "--device", "cpu", "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 label file(s)" in result.output
    loaded = load_model(bundle, device="cpu")
    for f in images.glob("*.tif"):
        np.testing.assert_array_equal(
            read_labels(images / "labels" / f.name), loaded.predict(read_image(f).data).mask
        )

    (images / "broken.tif").write_bytes(b"garbage")
    result = runner.invoke(app, ["predict", str(bundle), str(images), "--device", "cpu", "--tile-size", "64"])
    assert result.exit_code == 1
    assert (
        "skipped (labels exist)" in result.output
        and "failed:" in result.output
        and "broken.tif" in result.output
    )
    assert "skipped 4 with existing labels" in result.output

    result = runner.invoke(app, ["predict", str(tmp_path / "missing.pt"), str(images)])
    assert result.exit_code == 2 and "missing.pt" in result.output
