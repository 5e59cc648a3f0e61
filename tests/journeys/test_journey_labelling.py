"""Journeys (a) and (b): a folder dragged in -> labelled by hand and with SAM; trained -> proposals.

Only what a person reaches: the folder opened through our reader, docks from the Plugins menu,
their buttons, keys pressed on the canvas, napari's brush (``Labels.paint``) and point adding.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_fibsem._stack_view import text_overlay
from napari_fibsem.core.io.imageio import read_labels
from napari_fibsem.core.synthetic.dataset import write_dataset


def press(viewer, qtbot, key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    """A key pressed with the mouse over the canvas (napari sends it to the selected layer)."""
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, key, modifier)


def labels_layers(viewer) -> list:
    return [ly for ly in viewer.layers if ly._type_string == "labels" and ly.name != "sam preview"]


def test_folder_paint_next_then_sam_commit_and_ctrl_z(viewer, open_dock, screenshot, qtbot, tmp_path, monkeypatch):
    folder = tmp_path / "lamellae"
    write_dataset(folder, n=3, size=(192, 288), seed=3)
    for name in ("synthetic_0000.tif", "synthetic_0002.tif"):
        (folder / "labels" / name).unlink()

    viewer.open(str(folder), plugin="napari-fibsem")  # what dragging the folder in does
    overlay = text_overlay(viewer)
    step = viewer.dims.current_step[0]  # napari opens a stack at its middle slice
    assert overlay.visible and overlay.text == f"synthetic_000{step}.tif ({step + 1}/3)"
    viewer.dims.set_current_step(0, 2)
    assert overlay.text == "synthetic_0002.tif (3/3)"  # the slider says which file is on screen
    screenshot(viewer, "01-folder-dragged-in")

    w = open_dock("Label segmentation")
    w.from_layer_button.click()
    # the dock owns the only Labels layer: the reader's stack layers are gone, the person is told
    assert [ly.name for ly in labels_layers(viewer)] == ["labels: synthetic_0000.tif"]
    assert [ly.name for ly in viewer.layers if ly._type_string == "image"] == ["image: synthetic_0000.tif"]
    assert not overlay.visible
    assert "synthetic_0000.tif" in w.current_label.text() and "not labelled yet" in w.current_label.text()
    labels = w.layers.labels
    assert viewer.layers.selection.active.name == labels.name and labels.mode == "paint"
    screenshot(viewer, "02-labelling-dock-on-the-folder")

    press(viewer, qtbot, Qt.Key.Key_3)  # class 3 (landing_post)
    assert labels.selected_label == 3 and w.palette.currentRow() == 3
    labels.brush_size = 15
    labels.paint((96, 144), labels.selected_label)  # a brush dab, as napari's brush does
    screenshot(viewer, "03-painted")
    w.next_button.click()
    saved = read_labels(folder / "labels" / "synthetic_0000.tif")
    assert set(np.unique(saved)) == {0, 3} and 150 < (saved == 3).sum() < 250
    assert w.image_list.item(0).text().startswith("✓")
    assert w.layers.labels.name == "labels: synthetic_0001.tif"

    # SAM: a MobileSAM checkpoint picked in the file dialog (random weights: the plumbing, not quality)
    pytest.importorskip("mobile_sam")
    import torch

    from napari_fibsem.core.sam.models import build_sam
    from napari_fibsem.widgets._sam_assist import PREVIEW, PROMPTS

    checkpoint = tmp_path / "mobile_sam.pt"
    torch.save(build_sam("vit_t").state_dict(), checkpoint)
    from qtpy.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(checkpoint), ""))
    w.prev_button.click()  # back to the image labelled above
    w.sam.load_button.click()
    qtbot.waitUntil(lambda: w.sam.embedding is not None, timeout=180_000)
    prompts = viewer.layers[PROMPTS]
    assert viewer.layers.selection.active.name == PROMPTS and prompts.mode == "add"  # the first click counts
    assert prompts.current_size >= 6 and "SAM ready" in w.sam.status.text()
    screenshot(viewer, "04-sam-ready")

    press(viewer, qtbot, Qt.Key.Key_1)  # class 1 (lamella), also while the prompt layer is selected
    assert labels.selected_label == 1
    before = np.asarray(labels.data).copy()
    prompts.add([60.0, 200.0])  # what a click in add mode does
    qtbot.waitUntil(lambda: w.sam.preview is not None, timeout=10_000)
    assert set(np.unique(viewer.layers[PREVIEW].data)) <= {0, 1}
    screenshot(viewer, "05-sam-preview")
    press(viewer, qtbot, Qt.Key.Key_C)  # commit
    after = np.asarray(labels.data).copy()
    changed = after != before
    assert changed.any() and np.all(after[changed] == 1) and np.all(before[changed] == 0)
    assert len(prompts.data) == 0 and viewer.layers.selection.active.name == PROMPTS
    screenshot(viewer, "06-sam-committed")
    press(viewer, qtbot, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # napari's undo
    assert np.array_equal(labels.data, before)
    w.sam.service.close()


def test_train_from_the_menu_then_propose_and_accept(viewer, open_dock, screenshot, qtbot, tmp_path):
    folder = tmp_path / "lamellae"
    write_dataset(folder, n=6, size=(64, 96), seed=5)
    (folder / "labels" / "synthetic_0005.tif").unlink()  # one image still to label
    viewer.open(str(folder), plugin="napari-fibsem")

    t = open_dock("Train segmentation model")
    t.layer_button.click()  # "use the folder the selected layer was opened from"
    assert t.form.data_paths.paths() == [str(folder)]
    f = t.form
    f.save_path.line.setText(str(tmp_path / "run"))
    f.encoder.setCurrentText("tu-resnet10t")
    f.model_kwargs.setText("{encoder_depth: 3, decoder_channels: [32, 16, 8]}")
    f.epochs.setValue(2)
    f.batch_size.setValue(2)
    f.crop_size.setText("64")
    f.split.setValue(0.35)
    f.device.setCurrentText("cpu")
    f.num_workers.setValue(0)
    assert not t.use_button.isEnabled()
    t.start_button.click()
    qtbot.waitUntil(lambda: not t.running, timeout=180_000)
    assert t.error is None and t.use_button.isEnabled()
    screenshot(viewer, "01-trained")

    t.use_button.click()  # opens Label segmentation on the training folder with the new model
    w = viewer.window.dock_widgets["Label segmentation (napari-fibsem)"]
    assert w.folder is not None and w.folder.folder == folder
    assert w.proposals.checkpoint == t.result.best_path
    assert len(labels_layers(viewer)) == 1  # the reader's layers were replaced by the dock's
    w.image_list.setCurrentRow(5)  # the unlabelled image
    w.proposals.propose_button.click()
    qtbot.waitUntil(lambda: w.proposals._worker is None, timeout=60_000)
    proposal = w.proposals.proposal
    assert proposal is not None and proposal.shape == (64, 96)
    summary = w.proposals.summary.text()
    if proposal.any():
        assert w.layers.proposal is not None and w.layers.proposal.contour >= 1  # drawn as outlines
        assert "px" in summary
        screenshot(viewer, "02-proposal")
        w.proposals.accept_fill_button.click()
        saved = read_labels(folder / "labels" / "synthetic_0005.tif")
        assert np.array_equal(saved, proposal)  # nothing was painted before: fill takes it all
        press(viewer, qtbot, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # the accept is undoable
        assert not np.asarray(w.layers.labels.data).any()
    else:  # two epochs may find nothing: the person is told so, and there is nothing to accept
        assert "found nothing" in summary and not w.proposals.accept_fill_button.isEnabled()
    screenshot(viewer, "03-accepted")
