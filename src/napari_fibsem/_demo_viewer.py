"""Where the demo ends when a display exists: napari ready for the next thing a newcomer would do.

The Getting-started dock explains the order of the work; the labelling dock is open on the demo's
dataset with the model the demo just trained ready for proposals, so "Propose for this image" works
at once. Docks are opened the way the Plugins menu opens them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLUGIN = "napari-fibsem"


def open_demo(dataset: Path, model: Path | None, viewer: Any = None) -> Any:
    """A viewer with Getting started + Label segmentation on ``dataset`` (``model`` for proposals)."""
    import napari

    viewer = viewer or napari.Viewer(title="napari-fibsem demo")
    viewer.window.add_plugin_dock_widget(PLUGIN, "Getting started")
    dock, labelling = viewer.window.add_plugin_dock_widget(PLUGIN, "Label segmentation", tabify=True)
    dock.raise_()  # the labelling tab in front; Getting started one click away
    labelling.open_folder(dataset)
    if model is not None and Path(model).is_file():
        labelling.proposals.set_checkpoint(model)
        labelling.say(f"The demo's model ({Path(model).name}) is ready: press 'Propose for this image'.")
    return viewer
