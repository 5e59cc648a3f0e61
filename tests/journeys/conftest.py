"""Journeys: whole tasks done the way a person does them, on a real viewer (Qt under Xvfb).

Docks are opened from the Plugins menu (``viewer.window.add_plugin_dock_widget``), files through
``viewer.open(..., plugin="napari-fibsem")``, and widgets are driven through their buttons, keys
and napari's own layer editing. Each journey saves screenshots of its key states with the
``screenshot`` fixture: into ``$NAPARI_FIBSEM_SCREENSHOTS/<test name>/`` when that is set (to look
at them), else into the test's temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture
def screenshot(request, tmp_path) -> Callable[..., Path]:
    """``screenshot(viewer, "01-name")`` writes the whole window (docks included) as a PNG."""
    root = os.environ.get("NAPARI_FIBSEM_SCREENSHOTS")
    folder = (Path(root) if root else tmp_path / "screenshots") / request.node.name
    folder.mkdir(parents=True, exist_ok=True)

    def take(viewer, name: str) -> Path:
        from qtpy.QtWidgets import QApplication

        QApplication.processEvents()
        shot = viewer.screenshot(canvas_only=False, flash=False)
        assert shot.ndim == 3 and np.asarray(shot)[..., :3].max() > 0, "blank screenshot"
        path = folder / f"{name}.png"
        from PIL import Image

        Image.fromarray(np.asarray(shot)).save(path)
        return path

    return take


@pytest.fixture
def viewer(make_napari_viewer, qtbot):
    """A shown viewer at a size a person works at (docks need room to lay out)."""
    v = make_napari_viewer(show=True)
    v.window._qt_window.resize(1400, 900)
    qtbot.waitExposed(v.window._qt_window)
    v.screenshot(canvas_only=False, flash=False)  # a hidden viewer's first grab is black
    return v


@pytest.fixture
def open_dock(viewer, qtbot) -> Callable[[str], object]:
    """``open_dock("Label segmentation")``: the dock opened the way the Plugins menu opens it."""

    def open_(name: str):
        _dock, widget = viewer.window.add_plugin_dock_widget("napari-fibsem", name)
        qtbot.waitUntil(lambda: widget.isVisible(), timeout=5000)
        return widget

    return open_
