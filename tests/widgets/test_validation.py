"""The validation pop-up answering a running workflow: drag -> corrected engine row; Stop cancels."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_fibsem.core.automation.engine import DataEngine
from napari_fibsem.core.automation.workflow import StepConfig, ValidationBroker, WorkflowCancelled, run_step
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.microscope import ImageSettings, connect
from napari_fibsem.core.models.base import Prediction
from napari_fibsem.widgets.validation import MASK_LAYER, POINTS_LAYER, validation_popup

pytestmark = pytest.mark.gui
SETTINGS = ImageSettings(resolution=(384, 256), hfw=60e-6, beam="electron")


class OracleModel:
    class_map = ClassMap.default()
    backend = "oracle"

    def __init__(self, sim):
        self.sim = sim

    def predict(self, image):
        return Prediction(mask=self.sim.last_mask("electron"), probs=None)


def _start(sim, broker, engine, outcome):
    cfg = StepConfig(feature="LamellaCentre", image_settings=SETTINGS, supervised=True, checkpoint="oracle")

    def work():
        try:
            outcome["result"] = run_step(sim, OracleModel(sim), cfg, broker, engine)
        except WorkflowCancelled as e:
            outcome["cancelled"] = str(e)

    t = threading.Thread(target=work)
    t.start()
    return t


def test_dragged_point_becomes_a_corrected_engine_row(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    broker = ValidationBroker()
    widget = validation_popup(viewer, broker)
    sim = connect({"simulator": {"seed": 1}})
    engine = DataEngine(tmp_path / "engine")
    outcome: dict = {}
    t = _start(sim, broker, engine, outcome)
    qtbot.waitUntil(lambda: POINTS_LAYER in viewer.layers, timeout=30_000)
    layer = viewer.layers[POINTS_LAYER]
    i = list(layer.features["feature"]).index("LamellaCentre")
    y, x = layer.data[i]
    layer.selected_data = {i}
    layer._move({i}, [y, x])
    layer._move({i}, [y + 6.0, x - 8.0])  # the person drags the point 10 px
    assert "dx = -" in widget.readout.text() or "dx = +" in widget.readout.text()
    dx_um = float(widget.readout.text().split("dx = ")[1].split(" µm")[0])
    det = widget.request.detected
    expected_dx = (x - 8.0 - det.centre[0]) * det.pixel_size * 1e6
    assert dx_um == pytest.approx(expected_dx, abs=0.01)
    viewer.layers[MASK_LAYER].paint((5, 5), 1)  # and touches up the mask
    viewer.window._qt_window.resize(1200, 800)
    viewer.screenshot(canvas_only=False)
    from PIL import Image

    Image.fromarray(viewer.screenshot(canvas_only=False)).save(tmp_path / "validation_widget.png")
    widget.accept()
    t.join(30)
    assert outcome["result"].moved
    row = next(r for r in engine.rows() if r["feature"] == "LamellaCentre")
    assert row["corrected"] == "True" and float(row["distance_px"]) == pytest.approx(10.0)
    assert len(list((tmp_path / "engine" / "corrected_masks").glob("*.tif"))) == 1


def test_stop_cancels_the_waiting_workflow(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    broker = ValidationBroker()
    widget = validation_popup(viewer, broker)
    sim = connect({"simulator": {"seed": 1}})
    before = sim.get_stage_position()
    outcome: dict = {}
    t = _start(sim, broker, None, outcome)
    qtbot.waitUntil(lambda: widget.request is not None, timeout=30_000)
    widget.stop()
    t.join(30)
    assert not t.is_alive() and "cancelled" in outcome
    assert sim.get_stage_position() == before
    assert np.asarray(viewer.layers[POINTS_LAYER].data).shape[1] == 2


class BlindModel:
    """Finds nothing: every feature but the image centre is missing, so a person must place it."""

    class_map = ClassMap.default()
    backend = "blind"

    def __init__(self, sim):
        self.sim = sim

    def predict(self, image):
        return Prediction(mask=np.zeros(np.shape(image), np.uint8), probs=None)


def test_opened_alone_it_says_how_to_start_a_run_and_opens_the_run_dock(make_napari_viewer, qtbot):
    from napari_fibsem.widgets.run import RunWidget
    from napari_fibsem.widgets.validation import ValidationWidget

    viewer = make_napari_viewer(show=True)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-fibsem", "Validate detections")
    assert isinstance(widget, ValidationWidget)
    qtbot.waitUntil(lambda: widget.isVisible(), timeout=5000)
    assert "Run (supervised)" in widget.title.text() and "Start" in widget.title.text()
    assert widget.open_run_button.isVisible() and not widget.details.isVisible()
    assert not widget.accept_button.isEnabled() and not widget.stop_button.isEnabled()
    widget.open_run_button.click()
    runs = [w for w in viewer.window.dock_widgets.values() if isinstance(w, RunWidget)]
    assert len(runs) == 1
    qtbot.waitUntil(lambda: runs[0].isVisible(), timeout=5000)


def test_a_missing_feature_is_placed_by_a_click_and_the_sentence_follows(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    broker = ValidationBroker()
    widget = validation_popup(viewer, broker)
    sim = connect({"simulator": {"seed": 1}})
    engine = DataEngine(tmp_path / "engine")
    outcome: dict = {}
    cfg = StepConfig(feature="LamellaCentre", image_settings=SETTINGS, supervised=False, checkpoint="blind")

    def work():
        outcome["result"] = run_step(sim, BlindModel(sim), cfg, broker, engine)

    t = threading.Thread(target=work)
    t.start()
    # unsupervised, but the guard asks a person: the feature was not found
    qtbot.waitUntil(lambda: widget.request is not None, timeout=30_000)
    layer = viewer.layers[POINTS_LAYER]
    assert "not found" in widget.title.text() and layer.mode == "add"
    assert widget.plan.text().startswith("LamellaCentre is not placed")
    det = widget.request.detected
    x, y = det.centre[0] + 40, det.centre[1] - 20  # 40 px right, 20 px up of the centre
    layer.add([[y, x]])  # what a click in add mode does
    assert list(layer.features["feature"]) == ["ImageCentre", "LamellaCentre"]
    dx, dy = 40 * det.pixel_size * 1e6, 20 * det.pixel_size * 1e6
    assert widget.plan.text().startswith(f"Accept moves the stage {dx:.1f} µm right, {dy:.1f} µm up in the electron beam")
    widget.accept()
    t.join(30)
    assert outcome["result"].moved and outcome["result"].offset_m == pytest.approx((dx * 1e-6, dy * 1e-6))
    row = next(r for r in engine.rows() if r["feature"] == "LamellaCentre")
    assert row["found"] == "False" and row["corrected"] == "True"  # a person placed a missed feature


def test_keys_pick_a_mask_class_and_skip(make_napari_viewer, qtbot):
    from qtpy.QtCore import Qt

    viewer = make_napari_viewer(show=True)
    broker = ValidationBroker()
    widget = validation_popup(viewer, broker)
    sim = connect({"simulator": {"seed": 1}})
    before = sim.get_stage_position()
    outcome: dict = {}
    t = _start(sim, broker, None, outcome)
    qtbot.waitUntil(lambda: widget.request is not None, timeout=30_000)
    canvas = viewer.window._qt_viewer.canvas.native
    mask = viewer.layers[MASK_LAYER]
    assert mask.mode == "paint" and mask.selected_label == 1 and widget.palette.count() == 6
    assert "Enter" in widget.help.text() and "Esc" in widget.help.text()
    viewer.layers.selection.active = mask
    qtbot.keyClick(canvas, Qt.Key.Key_3)  # key 3: paint with class 3
    assert mask.selected_label == 3 and widget.palette.currentRow() == 3
    widget.palette.setCurrentRow(2)  # or a click on the palette
    assert mask.selected_label == 2 and viewer.layers.selection.active is mask
    viewer.layers.selection.active = viewer.layers[POINTS_LAYER]
    qtbot.keyClick(canvas, Qt.Key.Key_S)  # S: skip, even where napari's points use S
    t.join(30)
    assert outcome["result"].action == "skip" and not outcome["result"].moved
    assert sim.get_stage_position() == before
    assert "Skipped" in widget.title.text() and not widget.accept_button.isEnabled()
