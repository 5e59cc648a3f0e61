"""The keypoint labelling widget on a real viewer: add, drag, delete, navigate, reload, pre-fill,
the per-image checklist, and the pixel size of images without metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_fibsem.core.io.imageio import read_image, write_image
from napari_fibsem.core.io.keypoints import read_keypoints
from napari_fibsem.core.synthetic.dataset import write_dataset
from napari_fibsem.widgets.keypoints import POINTS_LAYER, KeypointWidget

pytestmark = pytest.mark.gui


@pytest.fixture
def folder(tmp_path) -> Path:
    ds = tmp_path / "ds"
    write_dataset(ds, n=3, size=(96, 144), seed=5)
    (ds / "keypoints.csv").unlink()  # start unlabelled: the widget creates the CSV
    for name in ("synthetic_0001.tif", "synthetic_0002.tif"):  # no metadata, so no pixel size
        write_image(ds / name, read_image(ds / name).data)
    return ds


@pytest.fixture
def widget(make_napari_viewer, folder) -> KeypointWidget:
    viewer = make_napari_viewer()
    w = KeypointWidget(viewer)
    viewer.window.add_dock_widget(w, name="Keypoints")
    w.open_folder(folder)
    return w


def _csv(folder):
    return {(p.filename, p.feature): p for p in read_keypoints(folder / "keypoints.csv")}


def test_add_drag_delete_navigate_and_reload(widget, folder, qtbot, make_napari_viewer, tmp_path):
    assert (folder / "keypoints.csv").read_text().startswith("filename,feature,x,y")
    layer = widget.viewer.layers[POINTS_LAYER]
    widget.feature.setCurrentText("LamellaCentre")
    layer.add([40.0, 70.0])  # (row, col)
    qtbot.waitUntil(lambda: ("synthetic_0000.tif", "LamellaCentre") in _csv(folder), timeout=3000)
    widget.feature.setCurrentText("NeedleTip")
    layer.add([20.0, 10.0])
    qtbot.waitUntil(lambda: ("synthetic_0000.tif", "NeedleTip") in _csv(folder), timeout=3000)
    p = _csv(folder)["synthetic_0000.tif", "LamellaCentre"]
    assert (p.x, p.y, p.source) == (70.0, 40.0, "manual")

    # a second NeedleTip replaces the first: one point per feature per image
    layer.add([25.0, 12.0])
    qtbot.waitUntil(lambda: _csv(folder)["synthetic_0000.tif", "NeedleTip"].x == 12.0, timeout=3000)
    qtbot.waitUntil(lambda: len(layer.data) == 2, timeout=3000)

    # drag the lamella point (what napari does on a mouse drag), settles, then saved
    i = list(layer.features["feature"]).index("LamellaCentre")
    layer.selected_data = {i}
    layer._move({i}, [41.0, 71.0])  # grab 1 px off the point's centre (40, 70) ...
    layer._move({i}, [46.0, 81.0])  # ... and drag by (5, 10): the point goes to (45, 80)
    layer._drag_start = None
    qtbot.waitUntil(lambda: _csv(folder)["synthetic_0000.tif", "LamellaCentre"].x == 80.0, timeout=3000)

    # delete the needle tip
    j = list(layer.features["feature"]).index("NeedleTip")
    layer.selected_data = {j}
    layer.remove_selected()
    qtbot.waitUntil(lambda: ("synthetic_0000.tif", "NeedleTip") not in _csv(folder), timeout=3000)

    # next image: empty layer; a point there; back: the first image's point is shown again
    widget.next_image()
    assert len(layer.data) == 0 and widget.current_name == "synthetic_0001.tif"
    widget.feature.setCurrentText("LandingPost")
    layer.add([10.0, 100.0])
    qtbot.waitUntil(lambda: ("synthetic_0001.tif", "LandingPost") in _csv(folder), timeout=3000)
    widget.previous_image()
    assert list(layer.features["feature"]) == ["LamellaCentre"]
    assert layer.data.tolist() == [[45.0, 80.0]]
    # the features being labelled are LamellaCentre and LandingPost: image 1 still misses one
    assert widget.image_list.item(1).text().startswith("◐") and widget.image_list.item(1).text().endswith("1/2")

    # a fresh viewer and widget on the same folder shows the saved points
    viewer2 = make_napari_viewer()
    w2 = KeypointWidget(viewer2)
    w2.open_folder(folder)
    assert w2.viewer.layers[POINTS_LAYER].data.tolist() == [[45.0, 80.0]]
    w2.show_image(1)
    assert list(w2.viewer.layers[POINTS_LAYER].features["feature"]) == ["LandingPost"]

    widget.viewer.window._qt_window.resize(1200, 800)
    widget.viewer.screenshot(canvas_only=False)
    shot = widget.viewer.screenshot(canvas_only=False)
    from PIL import Image

    Image.fromarray(shot).save(tmp_path / "keypoint_widget.png")
    assert shot.std() > 0


def test_prefill_from_labels_then_correct(widget, folder, qtbot):
    truth = {k: v for k, v in _reference(folder).items() if k[0] == "synthetic_0000.tif"}
    added = widget.prefill_from_labels()
    saved = _csv(folder)
    placed = {f for (name, f) in saved if name == "synthetic_0000.tif"}
    expected = {f for (_, f) in truth} - {"ImageCentre"}
    # every feature of the scene (not ImageCentre), plus the two the generator does not label
    assert expected <= placed and placed - expected <= {"NeedleTipBottom", "CoreFeature"}
    assert added == len(placed)
    for (name, feature), (x, y) in truth.items():
        if feature != "ImageCentre":
            assert np.hypot(saved[name, feature].x - x, saved[name, feature].y - y) <= 2
            assert saved[name, feature].source == "labels" and not saved[name, feature].corrected
    layer = widget.viewer.layers[POINTS_LAYER]
    i = list(layer.features["feature"]).index("LamellaCentre")
    layer.selected_data = {i}
    layer._move({i}, list(layer.data[i] + [0.0, 0.0]))
    layer._move({i}, list(layer.data[i] + [3.0, 4.0]))
    widget.commit()
    moved = _csv(folder)["synthetic_0000.tif", "LamellaCentre"]
    assert moved.corrected and moved.source == "labels"
    assert widget.prefill_from_labels() == 0  # nothing placed twice


def test_prefill_from_a_model_runs_in_a_worker(widget, folder, qtbot, tmp_path):
    from napari_fibsem.core.models import create_model, save_bundle

    model = create_model("Unet", "resnet18", device="cpu", encoder_depth=3, decoder_channels=(32, 16, 8))
    save_bundle(tmp_path / "random.pt", model)
    widget.prefill_from_model(tmp_path / "random.pt")
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60_000)
    assert "pre-filled" in widget.status.text()
    rows = [p for p in read_keypoints(folder / "keypoints.csv") if p.filename == "synthetic_0000.tif"]
    assert all(p.source == "random" for p in rows)
    widget.prefill_from_model(tmp_path / "missing.pt")
    qtbot.waitUntil(lambda: widget._worker is None, timeout=30_000)
    assert "pre-fill failed" in widget.status.text() and "missing.pt" in widget.status.text()


def test_ready_to_click_with_a_checklist_of_missing_features(widget, folder, qtbot):
    layer = widget.viewer.layers[POINTS_LAYER]
    assert widget.viewer.layers.selection.active is layer and layer.mode == "add"
    assert widget.checklist.state() == {"NeedleTip": False}
    layer.add([20.0, 10.0])
    qtbot.waitUntil(lambda: widget.checklist.state() == {"NeedleTip": True}, timeout=3000)
    widget.feature.setCurrentText("LandingPost")  # a pick joins the list ...
    assert widget.checklist.state() == {"NeedleTip": True, "LandingPost": False}
    widget.feature.setCurrentText("LamellaCentre")  # ... and leaves it again if nothing was placed
    assert widget.checklist.state() == {"NeedleTip": True, "LamellaCentre": False}
    assert widget.image_list.item(0).text() == "◐ synthetic_0000.tif  1/2"
    layer.add([40.0, 70.0])
    qtbot.waitUntil(lambda: widget.checklist.state() == {"NeedleTip": True, "LamellaCentre": True}, timeout=3000)
    assert [widget.image_list.item(i).text()[0] for i in range(3)] == ["✓", "·", "·"]
    assert "complete" in widget.status.text()

    layer.mode = "select"
    widget.next_image()  # every image starts ready to click, its first missing feature picked
    assert widget.viewer.layers.selection.active is layer and layer.mode == "add"
    assert widget.feature.currentText() == "NeedleTip"
    layer.mode = "pan_zoom"
    widget.checklist.itemClicked.emit(widget.checklist.item(1))  # what a click on "○ LamellaCentre" sends
    assert widget.feature.currentText() == "LamellaCentre" and layer.mode == "add"
    layer.add([45.0, 75.0])
    qtbot.waitUntil(lambda: widget.feature.currentText() == "NeedleTip", timeout=3000)  # on to the one still missing
    assert widget.checklist.state() == {"NeedleTip": False, "LamellaCentre": True}
    assert list(layer.features["feature"]) == ["LamellaCentre"]  # the pick moved on, the placed point did not change
    assert _csv(folder)["synthetic_0001.tif", "LamellaCentre"].x == 75.0


def test_pixel_size_for_images_without_metadata(widget, folder, qtbot):
    from napari.utils.notifications import notification_manager
    from qtpy.QtCore import Qt

    field, layer = widget.pixel_size, widget.viewer.layers[POINTS_LAYER]
    meta_ps = read_image(folder / "synthetic_0000.tif").metadata.pixel_size
    assert field.edit.text() == f"{meta_ps * 1e9:.6g}" and field.source.text() == "from metadata"
    widget.show_image(1)
    assert field.edit.text() == "" and field.source.text() == "unknown" and "pixel size unknown" in widget.status.text()
    layer.add([20.0, 10.0])
    qtbot.waitUntil(lambda: ("synthetic_0001.tif", "NeedleTip") in _csv(folder), timeout=3000)
    assert _csv(folder)["synthetic_0001.tif", "NeedleTip"].pixel_size is None

    qtbot.keyClicks(field.edit, "12.5")
    qtbot.keyClick(field.edit, Qt.Key.Key_Return)
    assert _csv(folder)["synthetic_0001.tif", "NeedleTip"].pixel_size == pytest.approx(12.5e-9)
    assert field.source.text() == "entered"
    field.edit.setText("0")  # not a pixel size: the field goes back, nothing is written
    field.edit.editingFinished.emit()
    assert field.edit.text() == "12.5" and _csv(folder)["synthetic_0001.tif", "NeedleTip"].pixel_size == pytest.approx(12.5e-9)
    field.edit.clear()  # cleared: back to the metadata's, here none
    qtbot.keyClick(field.edit, Qt.Key.Key_Return)
    assert _csv(folder)["synthetic_0001.tif", "NeedleTip"].pixel_size is None and field.source.text() == "unknown"

    qtbot.keyClicks(field.edit, "12.5")
    qtbot.keyClick(field.edit, Qt.Key.Key_Return)
    field.all_button.click()  # every image whose file has no pixel size; read off the UI thread
    qtbot.waitUntil(lambda: widget._worker is None, timeout=10_000)
    assert "set for 2 image(s) without metadata" in widget.status.text()
    assert any("without metadata" in str(n.message) for n in notification_manager.records)
    widget.show_image(2)
    assert field.edit.text() == "12.5" and field.source.text() == "entered"
    layer.add([30.0, 30.0])
    qtbot.waitUntil(lambda: ("synthetic_0002.tif", "NeedleTip") in _csv(folder), timeout=3000)
    assert _csv(folder)["synthetic_0002.tif", "NeedleTip"].pixel_size == pytest.approx(12.5e-9)
    widget.show_image(0)  # its metadata's size is kept
    assert field.edit.text() == f"{meta_ps * 1e9:.6g}" and field.source.text() == "from metadata"


def test_failures_are_notified(widget, tmp_path):
    from napari.utils.notifications import notification_manager

    widget.open_folder(tmp_path / "nowhere")
    assert "cannot open" in widget.status.text() and "nowhere" in widget.status.text()
    assert any("nowhere" in str(n.message) for n in notification_manager.records)
    assert widget.current_name == "synthetic_0000.tif"  # the open folder stays open
    widget.from_layer_button.click()  # nothing here was read from a folder
    assert "drag a folder into napari first" in widget.status.text()


def _reference(folder):
    # the dataset writer's keypoints, regenerated from the same seed (the CSV was deleted)
    from napari_fibsem.core.synthetic.dataset import scene_configs
    from napari_fibsem.core.synthetic.scene import generate_scene

    out = {}
    for i, (seed, cfg) in enumerate(scene_configs(3, (96, 144), 5)):
        for feature, xy in generate_scene(seed, cfg).keypoints.items():
            out[f"synthetic_{i:04d}.tif", feature] = xy
    return out
