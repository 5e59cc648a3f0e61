"""The segmentation labelling widget on a real viewer: paint, navigate (autosave), reopen, proposals."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from napari_fibsem.core.io.imageio import read_labels
from napari_fibsem.core.synthetic.dataset import write_dataset
from napari_fibsem.widgets.labelling import LabellingWidget

pytestmark = pytest.mark.gui


@pytest.fixture
def folder(tmp_path) -> Path:
    ds = tmp_path / "ds"
    write_dataset(ds, n=3, size=(96, 144), seed=7)
    for name in ("synthetic_0000.tif", "synthetic_0002.tif"):
        (ds / "labels" / name).unlink()  # two unlabelled images, one labelled
    return ds


@pytest.fixture
def widget(make_napari_viewer, folder) -> LabellingWidget:
    viewer = make_napari_viewer()
    w = LabellingWidget(viewer)
    viewer.window.add_dock_widget(w, name="Labelling")
    w.open_folder(folder)
    return w


def test_paint_navigate_autosave_and_reopen(widget, folder, make_napari_viewer, tmp_path):
    from napari.utils.key_bindings import coerce_keybinding

    layer = widget.layers.labels
    label0 = folder / "labels" / "synthetic_0000.tif"
    assert not label0.exists() and widget.image_list.item(0).text().startswith("·")
    # key 3 picks class 3 (landing_post) on the labels layer
    layer.keymap[coerce_keybinding("3")](layer)
    assert layer.selected_label == 3 and widget.palette.currentRow() == 3
    layer.brush_size = 9
    layer.paint((40, 60), layer.selected_label)
    widget.next_image()  # autosave on navigation
    saved = read_labels(label0)
    assert saved.dtype == np.uint8 and set(np.unique(saved)) == {0, 3}
    assert abs(int((saved == 3).sum()) - 69) < 20  # a 9 px brush dab
    assert widget.image_list.item(0).text().startswith("✓")

    # the labelled image shows its labels; leaving it unchanged does not rewrite the file
    label1 = folder / "labels" / "synthetic_0001.tif"
    mtime = label1.stat().st_mtime_ns
    assert np.array_equal(layer.data, read_labels(label1))
    widget.next_image()
    assert label1.stat().st_mtime_ns == mtime
    # an unlabelled image visited and left untouched stays unlabelled
    widget.previous_image()
    assert not (folder / "labels" / "synthetic_0002.tif").exists()

    # undo does not reach back into another image
    widget.show_image(0)
    layer.paint((10, 10), 1)
    layer.undo()
    assert np.array_equal(layer.data, saved)

    viewer2 = make_napari_viewer()
    w2 = LabellingWidget(viewer2)
    w2.open_folder(folder)
    assert np.array_equal(w2.layers.labels.data, saved)

    widget.viewer.window._qt_window.resize(1200, 800)
    widget.viewer.screenshot(canvas_only=False)
    from PIL import Image

    Image.fromarray(widget.viewer.screenshot(canvas_only=False)).save(tmp_path / "labelling_widget.png")


@pytest.fixture
def random_model(tmp_path):
    from napari_fibsem.core.models import create_model, save_bundle

    model = create_model("Unet", "resnet18", device="cpu", encoder_depth=3, decoder_channels=(32, 16, 8))
    return save_bundle(tmp_path / "random.pt", model), model


def test_proposal_writes_nothing_until_accepted(widget, folder, random_model, qtbot):
    path, model = random_model
    widget.proposals.set_checkpoint(path)
    label0 = folder / "labels" / "synthetic_0000.tif"
    layer = widget.layers.labels
    layer.paint((10, 10), 5)  # the person painted something first
    painted = np.asarray(layer.data).copy()
    widget.proposals.propose_current()
    qtbot.waitUntil(lambda: widget.proposals._worker is None, timeout=60_000)
    assert widget.layers.proposal is not None
    expected = model.predict(widget.image.data).mask
    assert np.array_equal(widget.layers.proposal.data, expected)
    assert not label0.exists() and np.array_equal(layer.data, painted)  # nothing written or changed yet
    assert widget.proposals.accept("fill")
    saved = read_labels(label0)
    assert np.array_equal(saved, np.where(painted == 0, expected, painted))
    assert widget.layers.proposal is None


def test_proposals_for_all_unlabelled_never_touch_saved_labels(widget, folder, random_model, qtbot):
    path, model = random_model
    widget.proposals.set_checkpoint(path)
    label1 = folder / "labels" / "synthetic_0001.tif"
    before = label1.read_bytes()
    widget.proposals.propose_all()
    qtbot.waitUntil(lambda: widget.proposals._worker is None, timeout=60_000)
    proposals = sorted(p.name for p in (folder / "proposals").iterdir())
    assert proposals == ["synthetic_0000.tif", "synthetic_0002.tif"]
    assert label1.read_bytes() == before
    assert not (folder / "labels" / "synthetic_0000.tif").exists()
    assert widget.image_list.item(2).text().startswith("◌")
    assert widget.layers.proposal is not None  # the shown image (0) has one now
    widget.proposals.discard()
    assert not (folder / "proposals" / "synthetic_0000.tif").exists()
    widget.show_image(2)
    assert widget.proposals.proposal is not None and not os.path.exists(folder / "labels" / "synthetic_0002.tif")


def test_sam_point_prompt_commits_a_region_and_undo_restores(widget, folder, qtbot, tmp_path):
    pytest.importorskip("mobile_sam")
    from napari_fibsem.core.sam.service import SamService, load_sam
    from napari_fibsem.widgets._sam_assist import PREVIEW, PROMPTS

    service = SamService(load_sam(None, "vit_t", device="cpu", random_weights=True), cache_dir=tmp_path / "emb")
    sam = widget.sam
    sam.set_service(service)
    qtbot.waitUntil(lambda: sam.embedding is not None, timeout=120_000)
    layer = widget.layers.labels
    widget.select_class(4)
    before = np.asarray(layer.data).copy()
    widget.viewer.layers[PROMPTS].add([48.0, 72.0])  # a positive click at the image centre
    qtbot.waitUntil(lambda: sam.preview is not None, timeout=10_000)
    preview = sam.preview.copy()
    assert preview.shape == before.shape and preview.any()
    assert set(np.unique(widget.viewer.layers[PREVIEW].data)) <= {0, 4}
    widget.viewer.window._qt_window.resize(1200, 900)
    widget.viewer.screenshot(canvas_only=False)
    from PIL import Image

    Image.fromarray(widget.viewer.screenshot(canvas_only=False)).save(tmp_path / "sam_preview.png")
    assert sam.commit()
    after = np.asarray(layer.data)
    changed = after != before
    assert changed.any() and np.all(after[changed] == 4)
    assert np.array_equal(changed, preview & (before == 0))  # fill mode: only unlabelled pixels
    assert sam.undo() and np.array_equal(layer.data, before)
    # the embedding is cached: revisiting the image runs no encoder
    widget.next_image()
    qtbot.waitUntil(lambda: sam.embedding is not None, timeout=120_000)
    service.wait_idle(120)
    runs = service.encoder_runs
    widget.previous_image()
    qtbot.waitUntil(lambda: sam.embedding is not None, timeout=120_000)
    assert service.encoder_runs == runs  # back to image 0: its embedding comes from the cache
    service.close()
