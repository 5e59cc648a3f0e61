"""Journey (d): a microscopist drives the simulator from the "Microscope control" dock.

Connect, image both beams, double-click a point to centre it (both beams re-imaged), make a plain
stage move (both images marked stale, Mill refused), image again, draw a rectangle on the lamella
in the ion image, press Mill, read and accept the confirmation, and see the trench in the new ion
image. The double-click is a real one on the canvas (Qt mouse events through vispy to napari).
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt
from qtpy.QtWidgets import QApplication, QMessageBox

from napari_fibsem.core.microscope.patterns import format_duration
from napari_fibsem.core.synthetic.scene import keypoints_from_mask
from napari_fibsem.widgets._microscope_layers import STALE_SUFFIX, layer_name
from napari_fibsem.widgets._milling_panel import PATTERN_LAYER

pytestmark = pytest.mark.gui

W, H, HFW_UM = 768, 512, 60.0
PS = HFW_UM * 1e-6 / W
LAMELLA = 1  # class id in the simulator's ground-truth masks
RATE = 2.7e-10  # m^3 / (A s): the sputter rate of silicon the estimate uses


def _double_click(viewer, qtbot, world_yx) -> None:
    """Double-click the canvas where the world point ``(y, x)`` is drawn."""
    canvas = viewer.window._qt_viewer.canvas
    view = canvas.view
    x, y = (view.transform * view.scene.transform).map([world_yx[1], world_yx[0]])[:2]
    native = canvas._scene_canvas.native
    qtbot.mouseDClick(native, Qt.MouseButton.LeftButton, pos=QPoint(round(x), round(y)))


def _toasts(viewer) -> list:
    """napari's notification pop-ups shown over the canvas now."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    return [t for t in viewer.window._qt_window.findChildren(NapariQtNotification) if t.isVisible()]


def _lamella(dock, beam: str) -> tuple[float, float]:
    return keypoints_from_mask(dock.microscope.last_mask(beam))["LamellaCentre"]


def _wait_for(dock, qtbot, word: str) -> None:
    qtbot.waitUntil(lambda: not dock.busy and word in dock.status.text(), timeout=60_000)


def test_centre_move_refuse_stale_confirm_and_mill(viewer, open_dock, screenshot, qtbot, monkeypatch):
    dock = open_dock("Microscope control")
    no_dialog = lambda *a, **k: pytest.fail(f"unexpected dialog {a[1:]}")  # noqa: E731
    monkeypatch.setattr(QMessageBox, "question", no_dialog)
    dock.width.setValue(W)
    dock.height.setValue(H)
    dock.hfw.setValue(HFW_UM)
    dock.connect_button.click()
    qtbot.waitUntil(lambda: dock.microscope is not None and not dock.busy, timeout=30_000)
    m = dock.microscope
    dock.beam.setCurrentText("both")
    dock.acquire_button.click()
    _wait_for(dock, qtbot, "acquired")
    electron, ion = viewer.layers[layer_name("electron")], viewer.layers[layer_name("ion")]
    assert electron.data.shape == ion.data.shape == (H, W)
    screenshot(viewer, "01-connected-both-beams")

    # double-click a point up and left of the lamella on the electron image: it comes to the centre
    (ex0, ey0), (ix0, _) = _lamella(dock, "electron"), _lamella(dock, "ion")
    old_electron, old_ion = electron.metadata["fibsem_image"], ion.metadata["fibsem_image"]
    viewer.layers.selection.active = electron  # as clicking it in the layer list does
    _double_click(viewer, qtbot, electron.data_to_world((ey0 - 60, ex0 - 120)))
    _wait_for(dock, qtbot, "centred")
    assert electron.metadata["fibsem_image"] is not old_electron and ion.metadata["fibsem_image"] is not old_ion
    (ex1, ey1), (ix1, _) = _lamella(dock, "electron"), _lamella(dock, "ion")
    assert (ex1 - ex0, ey1 - ey0) == pytest.approx((120, 60), abs=1.5)  # the clicked point is centred
    assert ix1 - ix0 == pytest.approx(120, abs=1.5)  # and the ion image was taken after the move
    assert dock.stale == {} and dock.stale_label.isHidden() and ion.name == layer_name("ion")
    centre = electron.data_to_world(((H - 1) / 2, (W - 1) / 2))  # the view follows the clicked feature
    assert np.allclose(viewer.scene.camera.center[-2:], centre, rtol=0, atol=PS)
    viewer.reset_view()  # the Home button: both images in view again
    screenshot(viewer, "02-after-centre")

    # a plain move: both images are now stale, and Mill refuses until the ion image is taken again
    dock.dx.setValue(-4.0)
    dock.move_button.click()
    _wait_for(dock, qtbot, "moved")
    assert set(dock.stale) == {"electron", "ion"}
    assert ion.name == layer_name("ion") + STALE_SUFFIX and electron.name == layer_name("electron") + STALE_SUFFIX
    assert "ion image stale: the stage moved since it was taken — acquire again" in dock.stale_label.text()
    dock.milling.mill_button.click()
    assert "cannot mill: the ion image is stale" in dock.status.text() and not dock.busy
    qtbot.waitUntil(lambda: any("cannot mill" in t.message.text() for t in _toasts(viewer)), timeout=5000)
    qtbot.wait(500)  # the pop-up fades in
    screenshot(viewer, "03-stale-image-refusal")
    for toast in _toasts(viewer):  # read: close it, as its × does
        toast.close_button.click()
    dock.acquire_button.click()
    _wait_for(dock, qtbot, "acquired")
    assert dock.stale == {} and ion.name == layer_name("ion")

    # draw a rectangle over the top half of the lamella in the ion image, as the rectangle tool adds it
    rows, cols = np.nonzero(m.last_mask("ion") == LAMELLA)
    top, bottom, left, right = rows.min() - 3, (rows.min() + rows.max()) // 2, cols.min() + 10, cols.max() - 10
    camera = viewer.scene.camera  # zoom in on the lamella in the ion image, as a person scrolls there
    camera.center = tuple(ion.data_to_world(((top + bottom) / 2, (left + right) / 2)))
    camera.zoom *= 4
    patterns = viewer.layers[PATTERN_LAYER]
    viewer.layers.selection.active = patterns
    patterns.add_rectangles(np.array([[top, left], [bottom, right]], float))
    box = (slice(top + 1, bottom), slice(left + 1, right))
    before = ion.data[box].astype(float).mean()
    assert (m.last_mask("ion")[box] == LAMELLA).sum() > 100
    dock.milling.depth.setValue(1.0)
    dock.milling.current.setCurrentText("100 pA")
    estimate = (right - left) * PS * (bottom - top) * PS * 1e-6 / (100e-12 * RATE)
    assert estimate > 60  # minutes, not milliseconds, on an instrument

    asked = []

    def answer(parent, title, text, *args, **kwargs):
        asked.append(text)
        shot = screenshot(viewer, "04-confirmation")
        box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=parent)
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        box.show()
        QApplication.processEvents()
        box.grab().save(str(shot.with_name("04-confirmation-dialog.png")))
        box.close()
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", answer)
    dock.milling.mill_button.click()
    _wait_for(dock, qtbot, "milled")
    (text,) = asked
    assert "Mill 1 pattern (1 rectangle)" in text
    assert f"rectangle {(right - left) * PS * 1e6:.2f} × {(bottom - top) * PS * 1e6:.2f} µm" in text
    assert "Depth: 1.00 µm" in text and "Milling current: 100 pA" in text
    assert f"Estimated time: {format_duration(estimate)}" in text
    status = dock.status.text()
    assert f"in {format_duration(estimate)} of simulated time" in status and "re-acquired" in status

    # the new ion image shows the trench where the rectangle was: the lamella's top half is gone
    assert (m.last_mask("ion")[box] == LAMELLA).sum() == 0
    assert ion.data[box].astype(float).mean() < before - 10
    assert dock.stale == {} and ion.name == layer_name("ion")
    screenshot(viewer, "05-after-milling")
