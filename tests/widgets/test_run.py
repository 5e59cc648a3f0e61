"""The Run dock: choices remembered, bad input refused with a notification, Stop mid-acquisition, Skip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

from napari_fibsem.core.automation.run_setup import SIMULATOR, load_settings
from napari_fibsem.widgets.run import RunWidget
from napari_fibsem.widgets.validation import POINTS_LAYER, ValidationWidget

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    import torch

    from napari_fibsem.core.models import create_model, save_bundle

    torch.manual_seed(1)
    model = create_model("Unet", "resnet18", device="cpu", encoder_depth=3, decoder_channels=(32, 16, 8))
    return save_bundle(tmp_path_factory.mktemp("model") / "random.pt", model)


def _errors() -> list[str]:
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [n.message for n in notification_manager.records if n.severity == NotificationSeverity.ERROR]


def _dock(viewer, qtbot) -> RunWidget:
    _d, widget = viewer.window.add_plugin_dock_widget("napari-fibsem", "Run (supervised)")
    qtbot.waitUntil(lambda: widget.isVisible(), timeout=5000)
    return widget


def _config(tmp_path: Path, **simulator) -> Path:
    path = tmp_path / "microscope.yaml"
    path.write_text(yaml.safe_dump({"name": "bench sim", "manufacturer": "Demo", "simulator": simulator}))
    return path


def test_a_missing_model_is_refused_and_choices_are_remembered(make_napari_viewer, qtbot, tmp_path, checkpoint, monkeypatch):
    viewer = make_napari_viewer(show=True)
    dock = _dock(viewer, qtbot)
    assert dock.microscope.currentData() == SIMULATOR and dock.task.currentText().startswith("align lamella")
    assert dock.engine_dir.text().endswith("data-engine")  # a default folder, shown
    before = len(_errors())
    dock.checkpoint.setText("")
    dock.start_button.click()
    assert dock.run is None and "model checkpoint" in dock.status.text()
    assert any("model checkpoint" in m for m in _errors()[before:])
    dock.checkpoint.setText(str(tmp_path / "gone.pt"))
    dock.start_button.click()
    assert dock.run is None and "gone.pt: model file does not exist" in _errors()[-1]
    # a config YAML from the file picker, a model, a folder, unsupervised: remembered on Start
    config = _config(tmp_path, delays={"acquire_s": 2.0})
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(config), ""))
    dock.config_button.click()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(checkpoint), ""))
    dock.model_button.click()
    assert load_settings().checkpoint == str(checkpoint)  # the picked model is remembered at once
    dock.engine_dir.setText(str(tmp_path / "engine"))
    dock.supervised.setChecked(False)
    dock.start_button.click()
    assert dock.run is not None and not dock.start_button.isEnabled() and dock.stop_button.isEnabled()
    # Stop while the microscope acquires: the run ends before it moves
    qtbot.waitUntil(lambda: "imaging" in dock.log.toPlainText(), timeout=60_000)
    dock.stop_button.click()
    qtbot.waitUntil(lambda: dock.run is None, timeout=60_000)
    assert dock.summary.state == "stopped" and dock.summary.moves == 0
    assert "Run stopped" in dock.summary_label.text()
    saved = load_settings()
    assert (saved.microscope, saved.checkpoint, saved.supervised) == (str(config), str(checkpoint), False)
    again = RunWidget(viewer)  # the next session starts where this one left off
    assert again.microscope.currentData() == str(config) and again.checkpoint.text() == str(checkpoint)
    assert again.engine_dir.text() == str(tmp_path / "engine") and not again.supervised.isChecked()


def test_a_bad_config_yaml_fails_with_a_notification(make_napari_viewer, qtbot, tmp_path, checkpoint, monkeypatch):
    viewer = make_napari_viewer(show=True)
    dock = _dock(viewer, qtbot)
    config = _config(tmp_path, seeed=3)  # a misspelt key
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(config), ""))
    dock.config_button.click()
    dock.checkpoint.setText(str(checkpoint))
    dock.engine_dir.setText(str(tmp_path / "engine"))
    before = len(_errors())
    dock.start_button.click()
    qtbot.waitUntil(lambda: dock.run is None, timeout=30_000)
    new = _errors()[before:]
    assert len(new) == 1 and "microscope.yaml: simulator.seeed: unknown key" in new[0]
    assert "the run failed" in dock.status.text() and dock.start_button.isEnabled()


def test_skip_in_the_pop_up_ends_the_run_without_moving(make_napari_viewer, qtbot, tmp_path, checkpoint):
    viewer = make_napari_viewer(show=True)
    dock = _dock(viewer, qtbot)
    dock.checkpoint.setText(str(checkpoint))
    dock.engine_dir.setText(str(tmp_path / "engine"))
    dock.supervised.setChecked(True)
    dock.start_button.click()
    popup = None

    def asking() -> bool:
        nonlocal popup
        popup = next((w for w in viewer.window.dock_widgets.values() if isinstance(w, ValidationWidget)), None)
        return popup is not None and popup.accept_button.isEnabled()

    qtbot.waitUntil(lambda: asking() or dock.run is None, timeout=60_000)
    assert "Waiting for you" in dock.status.text()
    viewer.layers.selection.active = viewer.layers[POINTS_LAYER]
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_S)
    qtbot.waitUntil(lambda: dock.run is None, timeout=30_000)
    assert dock.summary.state == "skipped" and dock.summary.moves == 0 and dock.summary.iterations == 1
    assert "Run skipped" in popup.title.text() and not popup.stop_button.isEnabled()
    rows = (tmp_path / "engine" / "detections.csv").read_text().splitlines()
    assert len(rows) == 3  # header + ImageCentre + LamellaCentre: the skipped detection is logged
