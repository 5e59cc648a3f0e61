"""Journey (c): a microscopist labels feature points on a folder dragged into napari.

Drag the folder in, open "Label keypoints" from the Plugins menu, use the opened folder, click
points on the canvas (real mouse clicks in the points layer's add mode), follow the checklist,
drag and delete a point in select mode, type a pixel size for images without metadata, step on
with Next, and find it all in keypoints.csv on disk.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt

from napari_fibsem.core.io.imageio import read_image, write_image
from napari_fibsem.core.io.keypoints import read_keypoints
from napari_fibsem.core.synthetic.dataset import write_dataset

pytestmark = pytest.mark.gui

NAMES = [f"synthetic_{i:04d}.tif" for i in range(4)]


@pytest.fixture
def folder(tmp_path):
    """Four 128x192 synthetic images, unlabelled; images 1 and 2 carry no metadata (no pixel size)."""
    ds = tmp_path / "lamellae"
    write_dataset(ds, n=4, size=(128, 192), seed=11)
    truth = {(p.filename, p.feature): (p.y, p.x) for p in read_keypoints(ds / "keypoints.csv")}
    (ds / "keypoints.csv").unlink()
    for name in NAMES[1:3]:
        write_image(ds / name, read_image(ds / name).data)  # plain TIFF, as from a foreign tool
    return ds, truth


def _canvas_point(viewer, row: float, col: float) -> QPoint:
    """Where data pixel (row, col) of the shown image is on the canvas widget."""
    view = viewer.window._qt_viewer.canvas.view
    x, y = (view.transform * view.scene.transform).map([col, row])[:2]
    return QPoint(round(x), round(y))


def _click(qtbot, viewer, row: float, col: float) -> None:
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=_canvas_point(viewer, row, col))


def _drag(qtbot, viewer, start: tuple[float, float], end: tuple[float, float]) -> None:
    canvas = viewer.window._qt_viewer.canvas.native
    a, b = _canvas_point(viewer, *start), _canvas_point(viewer, *end)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=a)
    for t in np.linspace(0.25, 1.0, 4):  # a few moves, as a hand makes them (vispy drops moves <10 ms apart)
        qtbot.wait(20)
        qtbot.mouseMove(canvas, a + (b - a) * float(t))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=b)


def _key(qtbot, viewer, key) -> None:
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, key)


def _csv(ds) -> dict[tuple[str, str], object]:
    return {(p.filename, p.feature): p for p in read_keypoints(ds / "keypoints.csv")}


def _click_checklist(qtbot, dock, feature: str) -> None:
    lst = dock.checklist
    row = [lst.item(i).data(Qt.ItemDataRole.UserRole) for i in range(lst.count())].index(feature)
    rect = lst.visualItemRect(lst.item(row))
    qtbot.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_label_keypoints_journey(viewer, open_dock, screenshot, qtbot, folder):
    ds, truth = folder
    meta_ps = read_image(ds / NAMES[0]).metadata.pixel_size
    viewer.open(ds, plugin="napari-fibsem")
    dock = open_dock("Label keypoints")
    dock.from_layer_button.click()

    # ready to click: the points layer is selected, in add mode, and the checklist names the feature
    layer = viewer.layers["keypoints"]
    assert viewer.layers.selection.active is layer and layer.mode == "add"
    assert viewer.layers[-1] is layer and ds.name not in viewer.layers  # the stack layers were closed
    assert dock.checklist.state() == {"NeedleTip": False}
    assert dock.pixel_size.edit.text() == f"{meta_ps * 1e9:.6g}" and dock.pixel_size.source.text() == "from metadata"
    screenshot(viewer, "01-folder-opened")

    # the first click places the needle tip; picking LamellaCentre puts it on the to-do list
    tip, centre, edge = (truth[NAMES[0], f] for f in ("NeedleTip", "LamellaCentre", "LamellaLeftEdge"))
    _click(qtbot, viewer, *tip)
    qtbot.waitUntil(lambda: (NAMES[0], "NeedleTip") in _csv(ds), timeout=3000)
    dock.feature.setCurrentText("LamellaCentre")
    assert dock.checklist.state() == {"NeedleTip": True, "LamellaCentre": False}
    _click(qtbot, viewer, *centre)
    dock.feature.setCurrentText("LamellaLeftEdge")
    _click(qtbot, viewer, *edge)
    qtbot.waitUntil(lambda: len(_csv(ds)) == 3, timeout=3000)
    assert dock.checklist.state() == {"NeedleTip": True, "LamellaCentre": True, "LamellaLeftEdge": True}
    assert dock.image_list.item(0).text().startswith("✓") and dock.image_list.item(1).text().startswith("·")
    saved = _csv(ds)
    for feature, (row, col) in (("NeedleTip", tip), ("LamellaCentre", centre), ("LamellaLeftEdge", edge)):
        p = saved[NAMES[0], feature]
        assert abs(p.x - col) < 0.5 and abs(p.y - row) < 0.5 and p.source == "manual"
    screenshot(viewer, "02-points-added")

    # select mode (key 3): drag the lamella centre 6 px right and 4 px down; click the left edge and Delete it
    _key(qtbot, viewer, Qt.Key.Key_3)
    assert layer.mode == "select"
    moved = (centre[0] + 4, centre[1] + 6)
    _drag(qtbot, viewer, centre, moved)
    qtbot.waitUntil(lambda: abs(_csv(ds)[NAMES[0], "LamellaCentre"].x - moved[1]) < 0.5, timeout=3000)
    _click(qtbot, viewer, *edge)
    assert [layer.features["feature"][i] for i in layer.selected_data] == ["LamellaLeftEdge"]
    _key(qtbot, viewer, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: (NAMES[0], "LamellaLeftEdge") not in _csv(ds), timeout=3000)
    assert list(layer.features["feature"]) == ["NeedleTip", "LamellaCentre"]
    screenshot(viewer, "03-dragged-and-deleted")

    # Next: an image without metadata, back in add mode, its first missing feature picked
    dock.next_button.click()
    assert dock.current_name == NAMES[1] and len(layer.data) == 0
    assert viewer.canvas.overlays["text"].text == f"{NAMES[1]} (2/4): 0/2 features"  # the file, on the canvas
    assert viewer.layers.selection.active is layer and layer.mode == "add"
    assert dock.checklist.state() == {"NeedleTip": False, "LamellaCentre": False}
    assert dock.feature.currentText() == "NeedleTip"
    assert dock.pixel_size.edit.text() == "" and dock.pixel_size.source.text() == "unknown"
    qtbot.keyClicks(dock.pixel_size.edit, "7.5")
    qtbot.keyClick(dock.pixel_size.edit, Qt.Key.Key_Return)
    assert dock.pixel_size.source.text() == "entered"

    # jump ahead from the checklist; after that click the pick moves on to what is still missing
    _click_checklist(qtbot, dock, "LamellaCentre")
    assert dock.feature.currentText() == "LamellaCentre" and layer.mode == "add"
    _click(qtbot, viewer, *truth[NAMES[1], "LamellaCentre"])
    qtbot.waitUntil(lambda: dock.feature.currentText() == "NeedleTip", timeout=3000)
    _click(qtbot, viewer, *truth[NAMES[1], "NeedleTip"])
    qtbot.waitUntil(lambda: dock.checklist.state() == {"NeedleTip": True, "LamellaCentre": True}, timeout=3000)
    screenshot(viewer, "04-pixel-size-entered")

    # the same pixel size for every image without metadata, then on to image 2
    dock.pixel_size.all_button.click()
    qtbot.waitUntil(lambda: dock._worker is None, timeout=10_000)
    dock.next_button.click()
    assert dock.current_name == NAMES[2]
    assert dock.pixel_size.edit.text() == "7.5" and dock.pixel_size.source.text() == "entered"
    marks = [dock.image_list.item(i).text()[0] for i in range(4)]
    assert marks == ["✓", "✓", "·", "·"]

    # on disk: four rows, where they were clicked (and dragged), with their images' pixel sizes
    rows = read_keypoints(ds / "keypoints.csv")
    assert sorted((p.filename, p.feature) for p in rows) == sorted(
        [(NAMES[0], "NeedleTip"), (NAMES[0], "LamellaCentre"), (NAMES[1], "NeedleTip"), (NAMES[1], "LamellaCentre")]
    )
    by_key = {(p.filename, p.feature): p for p in rows}
    expected = {(NAMES[0], "NeedleTip"): tip, (NAMES[0], "LamellaCentre"): moved,
                (NAMES[1], "NeedleTip"): truth[NAMES[1], "NeedleTip"],
                (NAMES[1], "LamellaCentre"): truth[NAMES[1], "LamellaCentre"]}  # fmt: skip
    for key, (row, col) in expected.items():
        assert abs(by_key[key].x - col) < 0.5 and abs(by_key[key].y - row) < 0.5, key
    assert all(p.pixel_size == pytest.approx(meta_ps) for p in rows if p.filename == NAMES[0])
    assert all(p.pixel_size == pytest.approx(7.5e-9) for p in rows if p.filename == NAMES[1])
