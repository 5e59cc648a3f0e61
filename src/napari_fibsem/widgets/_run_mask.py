"""The class palette of the validation pop-up: the mask is editable, and this says so.

The model's mask is a Labels layer in paint mode; the palette lists the class names with their
colours, and keys 1-9 (bound on the mask layer, as in the labelling dock) or a click pick the
class to paint with. Picking a class selects the mask layer, so the next stroke paints.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QListView, QListWidget, QListWidgetItem

from napari_fibsem._colormap import labels_colormap
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.widgets._common import alive, swatch


class MaskPalette(QListWidget):
    """Class names and colours of the mask being validated; a row or a key 1-9 selects the class."""

    def __init__(self, viewer: Any) -> None:
        super().__init__()
        self.viewer = viewer
        self.class_map = ClassMap.default()
        self.layer: Any = None
        self.setFlow(QListView.Flow.LeftToRight)  # chips that wrap: all classes in two or three rows
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setSpacing(2)
        self.setMaximumHeight(64)
        self.setToolTip("Paint the mask with this class (keys 1-9 while the mask layer is selected)")
        self.currentRowChanged.connect(self._on_row)

    def attach(self, layer: Any, class_map: ClassMap | None) -> None:
        """Show ``class_map`` and make ``layer`` (the mask) ready to paint with its first class."""
        self.class_map = class_map or ClassMap.default()
        self.layer = layer
        layer.colormap = labels_colormap(self.class_map)
        layer.mode = "paint"
        for k in range(1, 10):
            layer.bind_key(str(k), lambda _layer, c=k: self._key(c), overwrite=True)
        self.blockSignals(True)
        self.clear()
        for cid, info in self.class_map.classes.items():
            key = f"{cid}  " if 1 <= cid <= 9 else "   "
            self.addItem(QListWidgetItem(swatch(info.color), f"{key}{info.name}"))
        self.blockSignals(False)
        self.select_class(next((c for c in self.class_map.ids if c), 1), activate=False)

    def _key(self, class_id: int) -> None:
        if alive(self):
            self.select_class(class_id)

    def select_class(self, class_id: int, activate: bool = True) -> None:
        """Paint with ``class_id``; ids outside the class map are ignored."""
        if self.layer is None or class_id not in self.class_map.ids or self.layer not in self.viewer.layers:
            return
        self.layer.selected_label = class_id
        if activate:
            self.viewer.layers.selection.active = self.layer
            self.layer.mode = "paint"
        self.blockSignals(True)
        self.setCurrentRow(self.class_map.ids.index(class_id))
        self.blockSignals(False)

    def _on_row(self, row: int) -> None:
        if row >= 0:
            self.select_class(self.class_map.ids[row])
