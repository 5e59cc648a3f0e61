"""The validation pop-up answering a running workflow: drag -> corrected engine row; Stop cancels."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_fibsem.core.classes import ClassMap
from napari_fibsem.core.engine import DataEngine
from napari_fibsem.core.microscope import ImageSettings, connect
from napari_fibsem.core.models.base import Prediction
from napari_fibsem.core.workflow import StepConfig, ValidationBroker, WorkflowCancelled, run_step
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
