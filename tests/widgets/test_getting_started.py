"""The Getting-started dock: every button opens the dock it names, the way the Plugins menu does."""

from __future__ import annotations

from pathlib import Path

import npe2
import pytest

import napari_fibsem
from napari_fibsem.widgets.getting_started import SEGMENTATION_STEPS

pytestmark = pytest.mark.gui

MANIFEST = npe2.PluginManifest.from_file(Path(napari_fibsem.__file__).parent / "napari.yaml")
DOCKS = {w.display_name for w in MANIFEST.contributions.widgets}


def test_every_workflow_step_names_a_dock_of_the_manifest():
    named = {dock for _, docks, _ in SEGMENTATION_STEPS for dock in docks} | {"Detect events"}
    assert named <= DOCKS
    assert DOCKS - named == {"Getting started", "Validate detections"}  # the pop-up opens with a run


def test_buttons_open_their_docks_and_the_folder_is_noticed(make_napari_viewer, qtbot, mixed_folder):
    viewer = make_napari_viewer(show=True)
    _, guide = viewer.window.add_plugin_dock_widget("napari-fibsem", "Getting started")
    assert "No folder opened yet" in guide.folder_status.text()
    viewer.open(str(mixed_folder), plugin="napari-fibsem")
    assert str(mixed_folder) in guide.folder_status.text()
    for dock, button in guide.buttons.items():
        button.click()
        widget = viewer.window.dock_widgets[f"{dock} (napari-fibsem)"]
        qtbot.waitUntil(widget.isVisible, timeout=5000)
    assert len(viewer.window.dock_widgets) == len(guide.buttons) + 1
    viewer.layers.clear()
    assert "No folder opened yet" in guide.folder_status.text()
