"""Journey (e): a supervised run started from napari, corrected in the pop-up, finished; and a Stop.

The person opens "Run (supervised)" from the Plugins menu, keeps the simulator, picks a model
file (a random-weight U-Net: supervision does not need a good model, the person places the
feature), chooses the data-engine folder and presses Start. When the pop-up asks, they drag
LamellaCentre to where the lamella truly is (the simulator's ground truth) and press Enter;
the run moves the stage, asks again at the next iteration, and finishes. The data engine's
``detections.csv`` holds the correction, and both docks end in the run's summary.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

from napari_fibsem.core.automation.closed_loop import true_point
from napari_fibsem.widgets.validation import MASK_LAYER, POINTS_LAYER, ValidationWidget

pytestmark = pytest.mark.gui
FEATURE = "LamellaCentre"


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    """A tiny U-Net with seeded random weights, saved as a bundle (what the file picker returns)."""
    import torch

    from napari_fibsem.core.models import create_model, save_bundle

    torch.manual_seed(1)
    model = create_model("Unet", "resnet18", device="cpu", encoder_depth=3, decoder_channels=(32, 16, 8))
    return save_bundle(tmp_path_factory.mktemp("model") / "random-unet.pt", model)


def _set_up(open_dock, monkeypatch, checkpoint: Path, engine: Path):
    dock = open_dock("Run (supervised)")
    assert dock.microscope.currentData() == "simulator" and dock.supervised.isChecked()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(checkpoint), ""))
    dock.model_button.click()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(engine))
    dock.engine_button.click()
    assert dock.checkpoint.text() == str(checkpoint) and dock.engine_dir.text() == str(engine)
    return dock


def _popup(viewer) -> ValidationWidget | None:
    return next((w for w in viewer.window.dock_widgets.values() if isinstance(w, ValidationWidget)), None)


def _asking(viewer) -> bool:
    popup = _popup(viewer)
    return popup is not None and popup.accept_button.isEnabled()


def _drag(layer, index: int, x: float, y: float) -> None:
    """Move one point as a drag does: the layer's data changes, the other points stay."""
    data = np.array(layer.data, copy=True)
    data[index] = [y, x]
    layer.data = data


def test_supervised_run_from_the_run_dock(viewer, open_dock, screenshot, qtbot, tmp_path, monkeypatch, random_checkpoint):
    dock = _set_up(open_dock, monkeypatch, random_checkpoint, tmp_path / "engine")
    qtbot.wait(300)  # the new dock settles its width
    screenshot(viewer, "01-run-dock-set-up")
    dock.start_button.click()
    truths = []
    for iteration in (1, 2):
        qtbot.waitUntil(lambda: _asking(viewer) or dock.run is None, timeout=60_000)
        assert dock.run is not None, f"the run ended before asking at iteration {iteration}: {dock.status.text()}"
        popup = _popup(viewer)
        assert popup.request.iteration == iteration
        layer = viewer.layers[POINTS_LAYER]
        assert viewer.layers.selection.active is layer and layer.mode == "select"
        assert viewer.layers[MASK_LAYER].mode == "paint" and popup.palette.count() == 6
        i = list(layer.features["feature"]).index(FEATURE)
        if iteration == 1:
            assert popup.plan.text().startswith("Accept moves the stage")
            assert f"(iteration 1 of at most {dock.iterations.value() + 1})" in popup.plan.text()
            screenshot(viewer, "02-pop-up-asking")
        x, y = true_point(dock.run.microscope, FEATURE)
        truths.append((x, y))
        _drag(layer, i, x, y)
        det = popup.request.detected
        dx, dy = (x - det.centre[0]) * det.pixel_size, -(y - det.centre[1]) * det.pixel_size
        if iteration == 1:
            # the sentence follows the drag: the stage moves by the lamella's true offset
            assert dx > 1e-6 and dy < -1e-6
            expected = f"Accept moves the stage {dx * 1e6:.1f} µm right, {-dy * 1e6:.1f} µm down in the electron beam"
            assert popup.plan.text().startswith(expected), popup.plan.text()
            screenshot(viewer, "03-after-drag")
        qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_Return)  # Enter = Accept
        assert popup.answers[-1].action == "accept"
    qtbot.waitUntil(lambda: dock.run is None, timeout=60_000)
    screenshot(viewer, "04-finished")

    summary = dock.summary
    assert summary.state == "finished" and summary.iterations == 2 and summary.moves == 2
    assert math.hypot(*summary.final_offset_m) < 1e-6
    assert "Run finished" in dock.summary_label.text() and "2 iteration(s), 2 move(s)" in dock.summary_label.text()
    assert str(tmp_path / "engine" / "detections.csv") in dock.summary_label.text()
    assert "Run finished" in _popup(viewer).title.text() and not _popup(viewer).accept_button.isEnabled()
    with open(tmp_path / "engine" / "detections.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["feature"] == FEATURE]
    assert len(rows) == 2
    first = rows[0]
    assert (float(first["x"]), float(first["y"])) == pytest.approx(truths[0])
    moved = math.dist((float(first["det_x"]), float(first["det_y"])), truths[0])
    assert first["corrected"] == "True" and float(first["distance_px"]) == pytest.approx(moved) and moved > 50
    assert summary.corrections == sum(r["corrected"] == "True" for r in rows)


def test_stop_while_the_pop_up_asks(viewer, open_dock, screenshot, qtbot, tmp_path, monkeypatch, random_checkpoint):
    dock = _set_up(open_dock, monkeypatch, random_checkpoint, tmp_path / "engine")
    dock.start_button.click()
    qtbot.waitUntil(lambda: _asking(viewer) or dock.run is None, timeout=60_000)
    assert dock.run is not None, dock.status.text()
    dock.stop_button.click()
    qtbot.waitUntil(lambda: dock.run is None, timeout=30_000)
    screenshot(viewer, "stopped")
    summary = dock.summary
    assert summary.state == "stopped" and summary.moves == 0 and summary.iterations == 0
    assert "Run stopped" in dock.summary_label.text() and "0 move(s)" in dock.summary_label.text()
    assert "no iteration completed" in dock.summary_label.text() and "nothing logged" in dock.summary_label.text()
    popup = _popup(viewer)
    assert "Run stopped" in popup.title.text() and not popup.accept_button.isEnabled()
    assert dock.start_button.isEnabled() and not dock.stop_button.isEnabled()
    # nothing acted on: the cancelled detection was never logged
    assert not (tmp_path / "engine" / "detections.csv").exists()
