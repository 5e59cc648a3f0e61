"""Label feature points (NeedleTip, LamellaCentre, ...) on a folder of images, saved to a keypoints CSV.

A thin view over :class:`~napari_fibsem.core.data.keypoint_labels.KeypointLabels`: one image at a time
in an Image layer, its points in a Points layer whose ``feature`` property names the catalogue
feature. The points layer is selected in add mode whenever an image is shown, so a click places the
picked feature (one point per feature per image: a new one replaces the old); drag in select mode,
Delete removes. A checklist shows which features this image still misses (the image list marks
complete images) and the pick moves on to the next missing feature after each click. Every change
is written to the CSV (drags once they settle), with the image's pixel size: from its metadata, or
typed in for images without one. Points can be pre-filled from ``labels/`` masks or from a model
(in a worker thread), then corrected.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from napari_fibsem._layer_meta import opened_folder
from napari_fibsem._stack_view import retire_reader_layers, text_overlay
from napari_fibsem.core.data.keypoint_labels import KeypointLabels
from napari_fibsem.core.detection import CATALOGUE
from napari_fibsem.core.io.imageio import FibsemImage, read_image
from napari_fibsem.widgets._common import swatch
from napari_fibsem.widgets._folder_nav import FolderNavigator
from napari_fibsem.widgets._keypoints_jobs import KeypointJobsMixin
from napari_fibsem.widgets._keypoints_panels import FeatureChecklist, PixelSizeField, order_features

if TYPE_CHECKING:
    import napari

IMAGE_LAYER = "keypoint image"
POINTS_LAYER = "keypoints"
DRAG_SETTLE_MS = 250
HELP = (
    "Click on the image to place the feature picked below (the keypoints layer is in add mode, key 2); "
    "drag points in select mode (key 3); Delete removes the selected point; PageDown/PageUp: next/previous image."
)


class KeypointWidget(KeypointJobsMixin, QWidget):
    """Open a folder, step through its images, place one point per feature; the CSV follows."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.labels: KeypointLabels | None = None
        self.image: FibsemImage | None = None
        self._syncing = False
        self._worker: Any = None
        self._settle = QTimer(self, singleShot=True, interval=DRAG_SETTLE_MS)
        self._settle.timeout.connect(self.commit)
        self._build()
        self._enable(False)
        self.nav.bind_viewer_keys(viewer)

    def _build(self) -> None:
        self.nav = FolderNavigator("✓ every feature placed, ◐ some still missing, · none yet",
                                   "The folder a layer was read from (drag a folder into napari first)")  # fmt: skip
        self.nav.go.connect(self.show_image)
        self.nav.folder_chosen.connect(self.open_folder)
        self.nav.use_opened.connect(self.open_from_layer)
        self.image_list, self.from_layer_button = self.nav.image_list, self.nav.from_layer_button
        self.prev_button, self.next_button = self.nav.prev_button, self.nav.next_button
        self.feature = QComboBox()
        for name, spec in CATALOGUE.items():
            self.feature.addItem(swatch(spec.color), name)
        self.feature.setCurrentText("NeedleTip")
        self.feature.currentTextChanged.connect(self._on_feature)
        self.checklist = FeatureChecklist()
        self.checklist.picked.connect(self.pick_feature)
        self.pixel_size = PixelSizeField()
        self.pixel_size.changed.connect(self.set_pixel_size)
        self.pixel_size.apply_to_all.connect(self.apply_pixel_size_to_all)
        self._build_prefill()
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("Open a folder of images, or drag one into napari and press 'Use the opened folder'. " + HELP)
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addWidget(self.nav, stretch=1)
        layout.addLayout(_row(QLabel("Feature"), self.feature))
        layout.addWidget(QLabel("On this image:"))
        layout.addWidget(self.checklist)
        layout.addWidget(self.pixel_size)
        layout.addLayout(_row(self.prev_button, self.next_button))
        layout.addLayout(_row(self.from_labels_button, self.from_model_button))
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

    # -- folder and navigation ------------------------------------------------------------------
    def open_from_layer(self) -> None:
        """Open the folder a layer was read from (a folder dragged into napari); hide that folder's stack layers."""
        folder = opened_folder(self.viewer)
        if folder is None:
            self._tell("no layer here was opened from a folder; drag a folder into napari first", "warning")
            return
        self.open_folder(folder)
        if self.labels is not None and self.labels.folder == folder:
            message = retire_reader_layers(self.viewer, folder)
            if message:
                self._tell(message, "info")

    def open_folder(self, folder: str | Path, csv_path: str | Path | None = None) -> None:
        """Open ``folder`` (its ``keypoints.csv`` is created when absent) and show the first image."""
        self.commit()
        try:
            self.labels = KeypointLabels(folder, csv_path)
        except (OSError, ValueError) as e:
            self._tell(f"cannot open {folder}: {e}")
            return
        labels = self.labels
        self.nav.show_folder(labels, f"{labels.folder.name}/  →  points in {labels.csv_path.name}",
                             f"{labels.folder}\n{labels.csv_path}")  # fmt: skip
        self._enable(True)
        self.show_image(0)

    def show_image(self, index: int) -> None:
        """Save pending changes, then show image ``index`` and its points, ready to click the first missing feature."""
        if self.labels is None or not self.labels.has(index):
            return
        self.commit()
        path = self.labels.images[index]
        try:
            self.image = read_image(path, convert="mean")
        except (OSError, ValueError) as e:
            self._tell(f"cannot read {path.name}: {e}")
            return
        self.labels.index = index
        self.nav.show_current()
        self._show_layers()
        missing = self.labels.missing(path.name, self.feature_set())
        if missing:
            self.feature.setCurrentText(missing[0])
        self._show_pixel_size()
        self._refresh()
        self._activate_points()
        self.status.setText(self._image_status())

    def next_image(self) -> None:
        self.show_image(self.index + 1)

    def previous_image(self) -> None:
        self.show_image(self.index - 1)

    @property
    def index(self) -> int:
        """The image shown, kept by the folder state; -1 when none."""
        return self.labels.index if self.labels is not None else -1

    @property
    def current_name(self) -> str | None:
        return self.labels.current_name if self.labels is not None else None

    # -- features -------------------------------------------------------------------------------
    def feature_set(self) -> list[str]:
        """The features being labelled: used anywhere in the CSV, plus the one picked (see the checklist tooltip)."""
        used = self.labels.features_used() if self.labels is not None else []
        return order_features([*used, self.feature.currentText()])

    def pick_feature(self, name: str) -> None:
        """Place ``name`` with the next click: pick it and put the points layer in add mode."""
        self.feature.setCurrentText(name)
        if self.labels is not None:
            self._activate_points()

    def _on_feature(self, name: str) -> None:
        if POINTS_LAYER in self.viewer.layers:
            self.viewer.layers[POINTS_LAYER].feature_defaults = {"feature": name}
        self._refresh()

    def _pick_next_missing(self) -> None:
        """After the picked feature was placed: pick the next one this image misses (in checklist order)."""
        name, pick = self.current_name, self.feature.currentText()
        if self.labels is None or name is None:
            return
        features = self.feature_set()
        i = features.index(pick) + 1 if pick in features else 0
        missing = self.labels.missing(name, features[i:] + features[:i])
        if missing:
            self.feature.setCurrentText(missing[0])

    # -- layers ---------------------------------------------------------------------------------
    def _show_layers(self) -> None:
        assert self.image is not None
        data = self.image.data
        if IMAGE_LAYER in self.viewer.layers:
            layer = self.viewer.layers[IMAGE_LAYER]
            reset = layer.data.shape != data.shape
            layer.data = data
            layer.reset_contrast_limits()
        else:
            self.viewer.add_image(data, name=IMAGE_LAYER)
            reset = True
        self._load_points()
        if reset:
            self.viewer.reset_view()

    @property
    def points_layer(self):
        if POINTS_LAYER not in self.viewer.layers:
            layer = self.viewer.add_points(
                np.empty((0, 2)),
                name=POINTS_LAYER,
                features={"feature": np.array([], dtype=object)},
                feature_defaults={"feature": self.feature.currentText()},
                size=max(8, (self.image.data.shape[0] if self.image else 512) // 60),
                border_width=0,
                face_color="feature",
                face_color_cycle={name: spec.color for name, spec in CATALOGUE.items()},
                text={"string": "{feature}", "size": 9, "color": "white", "anchor": "upper_left"},
            )
            layer.events.data.connect(self._on_points_event)
        return self.viewer.layers[POINTS_LAYER]

    def _activate_points(self) -> None:
        """The points layer on top, the only selected layer, in add mode: the next click places a point."""
        layer = self.points_layer
        layers = self.viewer.layers
        if layers.index(layer) != len(layers) - 1:
            layers.move(layers.index(layer), len(layers))
        layers.selection.select_only(layer)
        layers.selection.active = layer
        layer.mode = "add"

    def _load_points(self) -> None:
        """Put the current image's points from the store into the layer (no save triggered)."""
        name = self.current_name
        points = self.labels.points(name) if (self.labels and name) else {}
        layer = self.points_layer
        self._syncing = True
        try:
            layer.selected_data = set()
            layer.data = np.empty((0, 2))
            if points:  # add() fills features with valid defaults; then the real names go in
                layer.add(np.array([[p.y, p.x] for p in points.values()]))
                layer.features = {"feature": np.array(list(points), dtype=object)}
                layer.refresh_colors()
                layer.selected_data = set()
        finally:
            self._syncing = False

    def _on_points_event(self, event) -> None:
        action = str(getattr(event, "action", ""))
        if self._syncing or not action.endswith(("added", "removed", "changed")):
            return
        if action.endswith("changed"):
            self._settle.start()  # a drag sends many events; write once it settles
        else:
            QTimer.singleShot(0, self.commit)  # after napari has finished adding/removing

    # -- saving ---------------------------------------------------------------------------------
    def commit(self) -> bool:
        """Write the layer's points for the current image to the CSV; the newest point per feature wins."""
        self._settle.stop()
        name = self.current_name
        if self.labels is None or name is None or POINTS_LAYER not in self.viewer.layers:
            return False
        layer = self.viewer.layers[POINTS_LAYER]
        latest: dict[str, tuple[float, float]] = {}
        for (y, x), feature in zip(layer.data, layer.features["feature"]):
            latest[str(feature)] = (float(x), float(y))
        before = set(self.labels.points(name))
        try:
            changed = self.labels.set_points(name, latest, self.effective_pixel_size())
        except OSError as e:
            self._tell(f"could not save {self.labels.csv_path}: {e}")
            return False
        if len(latest) != len(layer.data):  # a feature placed twice: show only the kept one
            self._load_points()
        if changed:
            if self.feature.currentText() in set(latest) - before:
                self._pick_next_missing()
            self._refresh()
            self.status.setText(self._image_status() + f"; saved to {self.labels.csv_path.name}")
        return changed

    def _image_status(self) -> str:
        name = self.current_name
        if self.labels is None or name is None:
            return ""
        features = self.feature_set()
        missing = self.labels.missing(name, features)
        text = f"{name}: {len(features) - len(missing)}/{len(features)} feature(s) placed"
        text += f"; click to place {self.feature.currentText()}" if missing else " — complete, Next ▶ (PageDown)"
        return text + ("" if self.effective_pixel_size() else "; pixel size unknown: type it below")

    def _refresh(self) -> None:
        """Checklist of the current image and the complete/missing marks of the image list."""
        if self.labels is None:
            return
        features = self.feature_set()
        placed = self.labels.placed()
        texts = []
        for path in self.labels.images:
            have = len(placed.get(path.name, set()) & set(features))
            mark = "✓" if have == len(features) else ("◐" if have else "·")
            texts.append(f"{mark} {path.name}  {have}/{len(features)}")
        self.nav.show_items(texts)
        name = self.current_name
        if name is not None:
            here = placed.get(name, set()) & set(features)
            self.checklist.show_features(features, here, self.feature.currentText())
            self._caption(f"{name} ({self.index + 1}/{len(self.labels.images)}): {len(here)}/{len(features)} features")

    def _caption(self, text: str) -> None:
        """The file on screen, written on the canvas (napari's text overlay), where the eyes are."""
        overlay = text_overlay(self.viewer)
        overlay.text, overlay.position, overlay.visible = text, "top_left", bool(text)

    def _enable(self, on: bool) -> None:
        for w in (self.prev_button, self.next_button, self.from_labels_button, self.from_model_button, self.feature,
                  self.pixel_size):  # fmt: skip
            w.setEnabled(on)

    def _tell(self, message: str, level: str = "error") -> None:
        """Show ``message`` in the status line and as a napari notification."""
        self.status.setText(message)
        {"error": show_error, "warning": show_warning, "info": show_info}[level](message)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.commit()
        super().closeEvent(event)


def _row(*widgets: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w, stretch=1)
    return row
