"""Every way a person reaches the plugin: Plugins menu docks, File > Open Sample, drag-and-drop.

Parametrised over the manifest itself, so a widget or sample added to ``napari.yaml`` cannot skip
these checks. Widgets built directly from Python prove nothing about napari's injection of the
viewer; these open them the way the menu does.
"""

from __future__ import annotations

from pathlib import Path

import npe2
import numpy as np
import pytest

import napari_fibsem

pytestmark = pytest.mark.gui

MANIFEST = npe2.PluginManifest.from_file(Path(napari_fibsem.__file__).parent / "napari.yaml")
WIDGETS = [w.display_name for w in MANIFEST.contributions.widgets]
SAMPLES = [s.key for s in MANIFEST.contributions.sample_data]


@pytest.mark.parametrize("name", WIDGETS)
def test_every_widget_docks_from_the_plugins_menu(make_napari_viewer, qtbot, name):
    viewer = make_napari_viewer(show=True)
    dock, widget = viewer.window.add_plugin_dock_widget("napari-fibsem", name)
    qtbot.waitUntil(lambda: dock.isVisible() and widget.isVisible(), timeout=5000)
    assert any(w is widget for w in viewer.window.dock_widgets.values()), "not docked in the window"
    # the Plugins menu holds an action for it, and triggering that action finds the same dock
    from napari._app_model import get_app_model

    command = next(w.command for w in MANIFEST.contributions.widgets if w.display_name == name)
    app = get_app_model()
    assert command in app.commands
    app.commands.execute_command(command).result()
    assert sum(w is widget for w in viewer.window.dock_widgets.values()) == 1  # toggled, not a second copy


@pytest.mark.parametrize("key", SAMPLES)
def test_every_sample_opens_from_the_sample_menu(make_napari_viewer, key):
    viewer = make_napari_viewer()
    from napari._app_model import get_app_model

    get_app_model().commands.execute_command(f"napari-fibsem.{key}").result()
    image, labels = viewer.layers
    assert image._type_string == "image" and labels._type_string == "labels"
    assert image.data.shape == labels.data.shape and image.data.shape[0] >= 512
    assert set(np.unique(labels.data)) >= {0, 1}
    assert image.metadata["pixel_size"] > 0


def test_files_and_folders_open_through_our_reader(make_napari_viewer, mixed_folder):
    viewer = make_napari_viewer()
    layers = viewer.open(str(mixed_folder), plugin="napari-fibsem")
    assert [ly._type_string for ly in layers] == ["image", "labels"]
    assert layers[0].data.shape == (3, 64, 60)
    one = viewer.open(str(mixed_folder / "c.tif"), plugin="napari-fibsem")
    assert [ly._type_string for ly in one] == ["image"]  # c.tif has no labels
    both = viewer.open([str(mixed_folder / "a.tif"), str(mixed_folder / "b.tif")], plugin="napari-fibsem")
    assert [ly.name for ly in both] == ["a", "a labels", "b", "b labels"]
