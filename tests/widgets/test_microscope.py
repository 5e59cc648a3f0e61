"""The microscope widget on a viewer with the simulator: acquire (one or both beams), move, centre
on a point (both beams re-acquired), stale images after moves, states, live stage readout, milling
patterns drawn as shapes (convert, estimate, confirm, mill, stop), preset currents, simulated time."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from napari_fibsem.core.microscope import CirclePattern, LinePattern, PolygonPattern, RectanglePattern
from napari_fibsem.core.synthetic.scene import keypoints_from_mask
from napari_fibsem.widgets._microscope_layers import STALE_SUFFIX
from napari_fibsem.widgets._milling_panel import PATTERN_LAYER, PatternError, shapes_to_patterns
from napari_fibsem.widgets.microscope import MicroscopeWidget, layer_name

pytestmark = pytest.mark.gui

PS = 60e-6 / 384  # pixel size of the 384 x 256 images at 60 µm field width
LAMELLA = 1  # class id in the simulator's ground-truth masks


@pytest.fixture
def make_widget(make_napari_viewer, qtbot):
    def make(simulator: dict | None = None, connect: bool = True) -> MicroscopeWidget:
        viewer = make_napari_viewer()
        w = MicroscopeWidget(viewer)
        viewer.window.add_dock_widget(w, name="Microscope")
        w.width.setValue(384)
        w.height.setValue(256)
        w.hfw.setValue(60.0)
        w.milling.ask = lambda summary: pytest.fail(f"unexpected milling confirmation: {summary}")
        if connect:
            w.connect_microscope({"simulator": simulator or {"seed": 0}})
            qtbot.waitUntil(lambda: w.microscope is not None and not w.busy, timeout=30_000)
        return w

    return make


@pytest.fixture
def widget(make_widget):
    return make_widget()


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
    assert asked and w.microscope.get_stage_position().x == 0.0 and "cancelled" in w.status.text()
    w.ask_confirmation = lambda message: True
    w.save_state()
    _wait(w, qtbot)
    w.move_relative(5e-6, -2e-6)
    _wait(w, qtbot)
    w.restore_state(0)
    _wait(w, qtbot)
    s = w.microscope.get_stage_position()
    assert np.allclose([s.x, s.y], [0.0, 0.0]) and "restored" in w.status.text()


def _acquire(w, qtbot, beams: str) -> None:
    w.beam.setCurrentText(beams)
    w.acquire()
    qtbot.waitUntil(lambda: not w.busy and "acquired" in w.status.text(), timeout=30_000)


def _lamella_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask == LAMELLA)
    return rows.min(), rows.max(), cols.min(), cols.max()


def test_acquire_both_beams_into_layers_scaled_to_metres(widget, qtbot):
    w = widget
    _acquire(w, qtbot, "both")
    layers = w.viewer.layers
    electron, ion = layers[layer_name("electron")], layers[layer_name("ion")]
    for layer in (electron, ion):
        assert layer.data.shape == (256, 384)
        assert np.allclose(layer.scale, [PS, PS], rtol=1e-12)
        assert layer.metadata["fibsem_image"].metadata.pixel_size == pytest.approx(PS)
    assert electron.metadata["fibsem_image"].metadata.beam_type == "electron"
    assert ion.metadata["fibsem_image"].metadata.beam_type == "ion"
    assert ion.translate[-1] > 384 * PS  # side by side: the ion image right of the electron image
    patterns = layers[PATTERN_LAYER]  # the patterns layer lies exactly on the ion image
    assert np.allclose(patterns.scale, ion.scale) and np.allclose(patterns.translate, ion.translate)
    assert layers.selection.active is not patterns  # double-click still centres on an image
    assert "electron image" in w.status.text() and "ion image" in w.status.text()


def test_shapes_convert_to_patterns_in_metres_with_y_up():
    shape, ps, depth = (256, 384), 10e-9, 2e-6
    # a rectangle above and right of the centre (rows 20..60, cols 100..300): y is positive (up)
    corners = np.array([[20, 100], [20, 300], [60, 300], [60, 100]])
    (rect,) = shapes_to_patterns([corners], ["rectangle"], shape, ps, depth)
    assert isinstance(rect, RectanglePattern)
    assert (rect.centre_x, rect.centre_y) == pytest.approx(((200 - 191.5) * ps, (127.5 - 40) * ps))
    assert (rect.width, rect.height, rect.depth, rect.rotation) == pytest.approx(
        (200 * ps, 40 * ps, depth, 0.0)
    )

    # rotated 30° counter-clockwise (as seen in the image): corners built in metres, given in pixels
    cx, cy, wd, ht, a = 5 * ps, -20 * ps, 80 * ps, 30 * ps, math.radians(30)
    corners = [
        (cx + u * math.cos(a) - v * math.sin(a), cy + u * math.sin(a) + v * math.cos(a))
        for u, v in ((-wd / 2, -ht / 2), (wd / 2, -ht / 2), (wd / 2, ht / 2), (-wd / 2, ht / 2))
    ]
    pixels = np.array([[127.5 - y / ps, x / ps + 191.5] for x, y in corners])
    for order in (pixels, pixels[[1, 2, 3, 0]]):  # whichever corner napari lists first
        (rot,) = shapes_to_patterns([order], ["rectangle"], shape, ps, depth)
        assert (rot.centre_x, rot.centre_y, rot.width, rot.height) == pytest.approx((cx, cy, wd, ht))
        assert rot.rotation == pytest.approx(a)

    line, poly, circle = shapes_to_patterns(
        [np.array([[127.5, 191.5], [27.5, 191.5]]), np.array([[0, 0], [0, 10], [10, 0]]),
         np.array([[100, 100], [100, 120], [120, 120], [120, 100]])],
        ["line", "polygon", "ellipse"], shape, ps, depth,
    )  # fmt: skip
    assert isinstance(line, LinePattern)
    assert (line.start_x, line.start_y, line.end_x, line.end_y) == pytest.approx((0, 0, 0, 100 * ps))
    assert isinstance(poly, PolygonPattern) and poly.vertices[0] == pytest.approx((-191.5 * ps, 127.5 * ps))
    assert isinstance(circle, CirclePattern) and circle.radius == pytest.approx(10 * ps)
    assert (circle.centre_x, circle.centre_y) == pytest.approx(((110 - 191.5) * ps, (127.5 - 110) * ps))

    with pytest.raises(PatternError, match="shape 1 .*outside"):
        shapes_to_patterns(
            [np.array([[-5, 10], [-5, 40], [20, 40], [20, 10]])], ["rectangle"], shape, ps, depth
        )
    with pytest.raises(PatternError, match="shape 1 is an ellipse"):
        shapes_to_patterns(
            [np.array([[10, 10], [10, 50], [20, 50], [20, 10]])], ["ellipse"], shape, ps, depth
        )


def test_mill_a_drawn_rectangle_digs_a_trench_in_the_ion_image(widget, qtbot, tmp_path):
    w = widget
    _acquire(w, qtbot, "both")
    m = w.microscope
    ion = w.viewer.layers[layer_name("ion")]
    r0, r1, c0, c1 = _lamella_box(m.last_mask("ion"))
    box = (slice(r0 - 3, (r0 + r1) // 2 + 1), slice(c0 + 10, c1 - 9))  # top half of the lamella and above
    before_mask, before = m.last_mask("ion")[box].copy(), ion.data[box].astype(float)
    assert (before_mask == LAMELLA).sum() > 50

    patterns = w.viewer.layers[PATTERN_LAYER]
    patterns.add_rectangles(np.array([[10, 10], [30, 60]]))  # drawn somewhere else first ...
    (top, bottom), (left, right) = (box[0].start, box[0].stop - 1), (box[1].start, box[1].stop - 1)
    edges = np.array([[top, left], [top, right], [bottom, right], [bottom, left]], float) + [
        [-0.5, -0.5], [-0.5, 0.5], [0.5, 0.5], [0.5, -0.5]
    ]  # fmt: skip
    patterns.data = [edges]  # ... then edited: moved onto the lamella, its edges on the box's pixel edges
    w.milling.depth.setValue(0.5)
    w.milling.estimate()
    qtbot.waitUntil(lambda: not w.busy and "estimated" in w.status.text(), timeout=30_000)
    (pattern,), settings, _ = w.milling.read_patterns()
    assert w.status.text().startswith(
        f"estimated milling time {m.estimate_milling_time([pattern], settings):.1f} s"
    )

    asked = []
    w.milling.ask = lambda summary: asked.append(summary) or True
    w.milling.mill()
    assert w.task == "milling"
    qtbot.waitUntil(lambda: not w.busy, timeout=30_000)
    (summary,) = asked
    estimate = m.estimate_milling_time([pattern], settings)
    assert "Mill 1 pattern (1 rectangle)" in summary and "Depth: 0.50 µm" in summary
    assert f"rectangle {pattern.width * 1e6:.2f} × {pattern.height * 1e6:.2f} µm" in summary
    assert "Milling current: 3 nA" in summary and f"Estimated time: {estimate:.1f} s" in summary
    assert "milled 1 pattern" in w.status.text() and "re-acquired" in w.status.text()
    result = w.milling.last_result  # the simulated duration is the estimate, and is what the dock says
    assert result.simulated_s == pytest.approx(estimate) and f"{estimate:.1f} s of simulated time" in w.status.text()
    assert w.milling.last_result.completed and w.milling.last_progress.fraction == 1.0
    assert w.milling.progress.value() == w.milling.progress.maximum()  # 100%
    after_mask = m.last_mask("ion")[box]
    assert (after_mask == LAMELLA).sum() == 0  # the lamella's top half is milled away
    assert ion.data[box].mean() < before.mean() - 10  # and the trench floor is dark
    assert m.get_beam_settings("ion").current == pytest.approx(300e-12)  # imaging current restored

    w.viewer.window._qt_window.resize(1400, 800)
    w.viewer.screenshot(canvas_only=False)  # a hidden viewer's first grab is black
    shot = w.viewer.screenshot(canvas_only=False)
    from PIL import Image

    for path in (tmp_path / "microscope_milling.png", os.environ.get("NAPARI_FIBSEM_SCREENSHOT")):
        if path:
            Image.fromarray(shot).save(path)


def test_stop_a_slow_milling_run_and_no_stage_polling_meanwhile(make_widget, qtbot):
    w = make_widget({"seed": 0, "milling_steps": 40, "delays": {"milling_step_s": 0.05}})
    _acquire(w, qtbot, "ion")
    m = w.microscope
    r0, r1, c0, c1 = _lamella_box(m.last_mask("ion"))
    w.viewer.layers[PATTERN_LAYER].add_rectangles(np.array([[r0 - 3, c0 + 10], [r1, c1 - 10]]))
    reads = []
    read = m.get_stage_position
    m.get_stage_position = lambda: reads.append(w.task) or read()
    w.stage_timer.setInterval(50)
    assert w.stage_timer.isActive()

    w.milling.ask = lambda summary: True
    w.milling.mill()
    qtbot.waitUntil(
        lambda: w.milling.last_progress is not None and w.milling.last_progress.step >= 2, timeout=30_000
    )
    assert w.milling.stop_button.isEnabled() and not w.milling.mill_button.isEnabled()
    assert reads == ["milling"]  # once, by the milling itself: is the stage still where the image was?
    qtbot.wait(300)  # several timer ticks while milling: none may read the stage
    assert reads == ["milling"]
    w.milling.stop_button.click()
    qtbot.waitUntil(lambda: not w.busy, timeout=30_000)
    result = w.milling.last_result
    assert not result.completed and 2 <= result.steps_done < result.steps_total == 40
    assert "stopped after" in w.status.text()
    assert w.milling.progress.value() < w.milling.progress.maximum()
    assert not w.milling.stop_button.isEnabled() and w.milling.mill_button.isEnabled()


def test_milling_refuses_without_connection_image_patterns_or_inside_the_image(make_widget, qtbot):
    w = make_widget(connect=False)
    w.milling.mill()
    assert "not connected" in w.status.text() and not w.milling.mill_button.isEnabled()
    w.connect_microscope({"simulator": {"seed": 0}})
    qtbot.waitUntil(lambda: w.microscope is not None and not w.busy, timeout=30_000)
    w.milling.mill()
    assert "acquire an ion image first" in w.status.text()
    _acquire(w, qtbot, "ion")
    w.milling.mill()
    assert "no patterns" in w.status.text()
    w.viewer.layers[PATTERN_LAYER].add_rectangles(np.array([[200, 300], [300, 420]]))  # past the corner
    w.milling.estimate()
    assert "outside the ion image" in w.status.text() and not w.busy


def test_stage_readout_refreshes_while_idle(widget, qtbot):
    w = widget
    w.stage_timer.setInterval(50)
    w.microscope.move_stage_relative(dx=4e-6)  # moved elsewhere (a script, the vendor UI)
    qtbot.waitUntil(lambda: "x 4.00 µm" in w.stage_label.text(), timeout=10_000)
    w.live_stage.setChecked(False)
    assert not w.stage_timer.isActive()


def _draw_on_lamella(w) -> None:
    r0, r1, c0, c1 = _lamella_box(w.microscope.last_mask("ion"))
    w.viewer.layers[PATTERN_LAYER].add_rectangles(np.array([[r0 - 3, c0 + 10], [(r0 + r1) // 2, c1 - 10]]))


def test_a_stage_move_marks_images_stale_and_milling_refuses_a_stale_ion_image(widget, qtbot):
    w = widget
    m = w.microscope
    _acquire(w, qtbot, "both")
    _draw_on_lamella(w)
    electron, ion = w.viewer.layers[layer_name("electron")], w.viewer.layers[layer_name("ion")]
    assert w.stale == {} and w.stale_label.isHidden()

    w.move_relative(2e-6, 0.0)
    _wait(w, qtbot)
    assert set(w.stale) == {"electron", "ion"}
    assert ion.name == layer_name("ion") + STALE_SUFFIX and electron.name == layer_name("electron") + STALE_SUFFIX
    assert not w.stale_label.isHidden()
    assert "ion image stale: the stage moved since it was taken — acquire again" in w.stale_label.text()

    w.milling.mill()  # refused before any question (the fixture fails the test if one is asked)
    assert "cannot mill: the ion image is stale" in w.status.text() and "mill the wrong place" in w.status.text()
    assert not w.busy and m.simulated_time == 0.0
    w.centre_on(electron, (10.0, 10.0))  # a point in a stale image is no longer where it shows
    assert "cannot centre: the electron image is stale" in w.status.text() and not w.busy
    assert m.get_stage_position().x == pytest.approx(2e-6)

    _acquire(w, qtbot, "ion")  # the ion image again: fresh, the electron image still stale
    assert ion.name == layer_name("ion") and set(w.stale) == {"electron"}
    assert "electron image stale" in w.stale_label.text() and "ion image" not in w.stale_label.text()
    asked = []
    w.milling.ask = lambda summary: asked.append(summary) or False  # answered No: nothing is milled
    w.milling.mill()
    assert asked and "cancelled" in w.status.text() and not w.busy and m.simulated_time == 0.0

    w.move_relative(-2e-6, 0.0)  # back where the electron image was taken: it is current again
    _wait(w, qtbot)
    assert set(w.stale) == {"ion"} and electron.name == layer_name("electron")

    w.save_state()
    _wait(w, qtbot)
    _acquire(w, qtbot, "both")
    w.move_relative(0.0, 3e-6)
    _wait(w, qtbot)
    _acquire(w, qtbot, "both")
    assert w.stale == {}
    w.restore_state(0)  # restoring a saved state moves the stage too
    _wait(w, qtbot)
    assert set(w.stale) == {"electron", "ion"}

    _acquire(w, qtbot, "both")
    w.stage_timer.setInterval(50)
    m.move_stage_relative(dx=1e-6)  # moved elsewhere (a script, the vendor UI): the readout sees it
    qtbot.waitUntil(lambda: set(w.stale) == {"electron", "ion"}, timeout=10_000)
    assert ion.name.endswith(STALE_SUFFIX)


def test_milling_refuses_when_the_stage_moves_while_the_confirmation_is_open(widget, qtbot):
    w = widget
    m = w.microscope
    _acquire(w, qtbot, "ion")
    _draw_on_lamella(w)

    def answer(summary: str) -> bool:
        m.move_stage_relative(dx=1e-6)  # someone moves the stage while the dialog is open
        return True

    w.milling.ask = answer
    w.milling.mill()
    _wait(w, qtbot)
    assert "milling failed" in w.status.text() and "stale" in w.status.text()
    assert m.simulated_time == 0.0 and w.milling.last_result is None and set(w.stale) == {"ion"}


def test_centre_on_a_point_reacquires_both_beams_when_both_are_shown(widget, qtbot):
    w = widget
    _acquire(w, qtbot, "both")
    electron, ion = w.viewer.layers[layer_name("electron")], w.viewer.layers[layer_name("ion")]
    old_electron, old_ion = electron.metadata["fibsem_image"], ion.metadata["fibsem_image"]
    x, y = keypoints_from_mask(w.microscope.last_mask("electron"))["LamellaCentre"]
    w.centre_on(electron, (y + 10, x - 20))
    qtbot.waitUntil(lambda: not w.busy and "acquired" in w.status.text(), timeout=30_000)
    assert "centred" in w.status.text() and "electron image" in w.status.text() and "ion image" in w.status.text()
    assert electron.metadata["fibsem_image"] is not old_electron and ion.metadata["fibsem_image"] is not old_ion
    assert w.stale == {} and w.stale_label.isHidden()
    assert not np.array_equal(ion.data, old_ion.data)  # the ion image shows the moved stage

    ion.visible = False  # only the electron image is shown: only it is re-acquired
    old_ion = ion.metadata["fibsem_image"]
    w.centre_on(electron, (y - 15, x + 25))
    qtbot.waitUntil(lambda: not w.busy and "acquired" in w.status.text(), timeout=30_000)
    assert ion.metadata["fibsem_image"] is old_ion and set(w.stale) == {"ion"}
    assert ion.name == layer_name("ion") + STALE_SUFFIX


def test_milling_current_is_one_of_the_ion_beams_preset_currents(make_widget, qtbot):
    w = make_widget(connect=False)
    assert w.milling.current.count() == 0 and not w.milling.current.isEnabled()
    w.connect_microscope({"simulator": {"seed": 0}})
    qtbot.waitUntil(lambda: w.microscope is not None and not w.busy, timeout=30_000)
    items = [w.milling.current.itemText(i) for i in range(w.milling.current.count())]
    assert items[0] == "1 pA" and items[-1] == "65 nA" and "300 pA" in items and len(items) == 14
    assert w.milling.current.currentText() == "3 nA" and w.milling.current.isEnabled()

    ion = {"voltage_v": 30e3, "current_a": 1e-10, "currents_a": [2e-8, 5e-11, 1e-9]}  # as a system file lists
    w.connect_microscope({"beams": {"ion": ion}, "simulator": {"seed": 0}})
    qtbot.waitUntil(lambda: not w.busy and w.milling.current.count() == 3, timeout=30_000)
    assert [w.milling.current.itemText(i) for i in range(3)] == ["50 pA", "1 nA", "20 nA"]
    w.milling.current.setCurrentText("20 nA")
    _acquire(w, qtbot, "ion")
    _draw_on_lamella(w)
    _, settings, _ = w.milling.read_patterns()
    assert settings.current == pytest.approx(2e-8)
