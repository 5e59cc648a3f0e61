"""The microscope widget on a viewer with the simulator: acquire, move, centre on a point, states."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fibsem.core.synthetic import keypoints_from_mask
from napari_fibsem.widgets.microscope import MicroscopeWidget, layer_name

pytestmark = pytest.mark.gui


@pytest.fixture
def widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    w = MicroscopeWidget(viewer)
    viewer.window.add_dock_widget(w, name="Microscope")
    w.width.setValue(384)
    w.height.setValue(256)
    w.hfw.setValue(60.0)
    w.connect_microscope({"simulator": {"seed": 0}})
    qtbot.waitUntil(lambda: w.microscope is not None and not w.busy, timeout=30_000)
    return w


def _wait(w, qtbot):
    qtbot.waitUntil(lambda: not w.busy, timeout=30_000)


def test_acquire_move_and_centre_on_a_double_clicked_point(widget, qtbot, tmp_path):
    w = widget
    w.acquire()
    _wait(w, qtbot)
    layer = w.viewer.layers[layer_name("electron")]
    assert layer.data.shape == (256, 384) and "nm/px" in w.status.text()
    x0, y0 = keypoints_from_mask(w.microscope.last_mask("electron"))["LamellaCentre"]

    w.move_relative(3e-6, 0.0)
    _wait(w, qtbot)
    assert w.microscope.get_stage_position().x == pytest.approx(3e-6)
    assert "x 3.00 µm" in w.stage_label.text()
    w.acquire()
    _wait(w, qtbot)
    x1, _ = keypoints_from_mask(w.microscope.last_mask("electron"))["LamellaCentre"]
    assert x1 == pytest.approx(x0 - 3e-6 / (60e-6 / 384), abs=1)  # the scene moved left

    # double-click on the lamella: it comes to the centre and a new image is taken
    target = keypoints_from_mask(w.microscope.last_mask("electron"))["LamellaCentre"]
    w.centre_on(layer, (target[1], target[0]))
    qtbot.waitUntil(lambda: not w.busy and "acquired" in w.status.text(), timeout=30_000)
    xc, yc = keypoints_from_mask(w.microscope.last_mask("electron"))["LamellaCentre"]
    assert abs(xc - 191.5) <= 1 and abs(yc - 127.5) <= 1

    w.viewer.window._qt_window.resize(1200, 800)
    w.viewer.screenshot(canvas_only=False)
    from PIL import Image

    Image.fromarray(w.viewer.screenshot(canvas_only=False)).save(tmp_path / "microscope_widget.png")


def test_large_move_asks_and_states_restore(widget, qtbot):
    w = widget
    asked = []
    w.ask_confirmation = lambda message: asked.append(message) or False
    w.move_relative(500e-6, 0.0)  # beyond the default 200 µm step
    _wait(w, qtbot)
    assert asked and w.microscope.get_stage_position().x == 0.0 and "failed" in w.status.text()
    w.ask_confirmation = lambda message: True
    w.save_state()
    _wait(w, qtbot)
    w.move_relative(5e-6, -2e-6)
    _wait(w, qtbot)
    w.restore_state(0)
    _wait(w, qtbot)
    s = w.microscope.get_stage_position()
    assert np.allclose([s.x, s.y], [0.0, 0.0]) and "restored" in w.status.text()
