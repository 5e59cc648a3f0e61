"""The labelling dock's layers: one image, its only Labels layer, and a proposal drawn as contours.

Layers are named for the person ("labels: synthetic_0003.tif") and renamed on navigation, so the
layer list says which file is on screen.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_fibsem._colormap import labels_colormap
from napari_fibsem._layer_meta import META_KEY
from napari_fibsem.core.io.classes import ClassMap

if TYPE_CHECKING:
    import napari


class LabellingLayers:
    """Creates, renames and refreshes the image / labels / proposal layers of the labelling dock."""

    def __init__(self, viewer: napari.viewer.Viewer, on_class_key: Callable[[int], None],
                 extra_keys: dict[str, Callable[[], None]] | None = None) -> None:  # fmt: skip
        self.viewer = viewer
        self.on_class_key = on_class_key
        self.extra_keys = dict(extra_keys or {})
        self.image: Any = None
        self.labels: Any = None
        self.proposal: Any = None

    def _alive(self, layer: Any) -> bool:
        return layer is not None and layer in self.viewer.layers

    def show(self, name: str, image: np.ndarray, labels: np.ndarray, class_map: ClassMap, folder: Path) -> None:
        """Show ``image`` and its ``labels``; undo starts afresh (it must not reach another image).

        The image layer records its folder as our reader does (marked as the dock's own), so the
        other docks' "use the opened folder" find the folder being labelled.
        """
        reset = not self._alive(self.image) or self.image.data.shape != image.shape
        if self._alive(self.image):
            self.image.data = image
            self.image.reset_contrast_limits()
        else:
            self.image = self.viewer.add_image(image)
        self.image.name = f"image: {name}"
        self.image.metadata[META_KEY] = {"folder": str(folder), "files": [name], "dock": "labelling"}
        self.remove_proposal()
        if self._alive(self.labels):
            self.labels.data = labels
            self.labels.editable = False  # napari's public way to empty a Labels layer's undo history
            self.labels.editable = True
        else:
            self.labels = self.viewer.add_labels(labels, opacity=0.5)
            self.bind_keys(self.labels)
            self.labels.selected_label = next((c for c in class_map.ids if c), 1)
        self.labels.name = f"labels: {name}"
        self.labels.colormap = labels_colormap(class_map)
        self.labels.mode = "paint"
        self.viewer.layers.selection.active = self.labels
        if reset:
            self.viewer.reset_view()

    def bind_keys(self, layer: Any) -> None:
        """Keys 1-9 choose a class and the dock's own keys work while ``layer`` is selected."""
        for k in range(1, 10):
            layer.bind_key(str(k), lambda _layer, c=k: self.on_class_key(c), overwrite=True)
        for key, action in self.extra_keys.items():
            layer.bind_key(key, lambda _layer, f=action: f(), overwrite=True)

    def show_proposal(self, name: str, mask: np.ndarray, class_map: ClassMap) -> None:
        """The model's proposal as class-coloured outlines over the labels, never painted into."""
        if self._alive(self.proposal):
            self.proposal.data = mask
        else:
            self.proposal = self.viewer.add_labels(mask, opacity=0.9, blending="translucent_no_depth")
            self.proposal.editable = False
        self.proposal.name = f"proposal: {name}"
        self.proposal.colormap = labels_colormap(class_map)
        self.proposal.contour = max(1, round(max(mask.shape) / 400))
        if self._alive(self.labels):
            self.viewer.layers.selection.active = self.labels

    def remove_proposal(self) -> None:
        if self._alive(self.proposal):
            self.viewer.layers.remove(self.proposal)
        self.proposal = None


def proposal_summary(mask: np.ndarray, class_map: ClassMap) -> str:
    """Pixels per class of a proposal, or that the model found nothing."""
    ids, counts = np.unique(np.asarray(mask), return_counts=True)
    parts = [
        f"{class_map.classes[int(i)].name if int(i) in class_map.classes else f'class {int(i)}'} {int(c):,} px"
        for i, c in zip(ids, counts)
        if i != 0
    ]
    if not parts:
        return "the model found nothing here (every pixel is background)"
    return "proposal: " + ", ".join(parts)
