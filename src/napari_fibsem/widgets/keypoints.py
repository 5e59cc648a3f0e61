"""Label feature points (NeedleTip, LamellaCentre, ...) on a folder of images, saved to a keypoints CSV.

A thin view over :class:`~napari_fibsem.core.keypoint_labels.KeypointLabels`: one image at a time
in an Image layer, its points in a Points layer whose ``feature`` property names the catalogue
feature. Pick a feature, add with the Points layer's add mode (one point per feature per image: a
new one replaces the old), drag in select mode, Delete removes. Every change is written to the CSV
(drags once they settle). Points can be pre-filled from the folder's ``labels/`` masks or from a
model (in a worker thread), then corrected.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_fibsem.core.detection import CATALOGUE, detect_features
from napari_fibsem.core.imageio import FibsemImage, read_image, read_labels
from napari_fibsem.core.keypoint_labels import KeypointLabels
from napari_fibsem.widgets._common import start_worker, swatch

if TYPE_CHECKING:
    import napari

IMAGE_LAYER = "keypoint image"
POINTS_LAYER = "keypoints"
DRAG_SETTLE_MS = 250


class KeypointWidget(QWidget):
    """Open a folder, step through its images, place one point per feature; the CSV follows."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.labels: KeypointLabels | None = None
        self.index = -1
        self.image: FibsemImage | None = None
        self._syncing = False
        self._worker: Any = None
        self._settle = QTimer(self, singleShot=True, interval=DRAG_SETTLE_MS)
        self._settle.timeout.connect(self.commit)

        self.open_button = QPushButton("Open image folder…")
        self.open_button.clicked.connect(self._choose_folder)
        self.folder_label = QLabel("no folder open")
        self.folder_label.setWordWrap(True)
        self.image_list = QListWidget()
        self.image_list.currentRowChanged.connect(self._on_row)
        self.feature = QComboBox()
        for name, spec in CATALOGUE.items():
            self.feature.addItem(swatch(spec.color), name)
        self.feature.setCurrentText("NeedleTip")
        self.feature.currentTextChanged.connect(self._on_feature)
        self.prev_button, self.next_button = QPushButton("◀ Previous"), QPushButton("Next ▶")
        self.prev_button.clicked.connect(self.previous_image)
        self.next_button.clicked.connect(self.next_image)
        self.from_labels_button = QPushButton("Pre-fill from labels/")
        self.from_labels_button.setToolTip("Locate the features in this image's label mask (missing points only)")
        self.from_labels_button.clicked.connect(self.prefill_from_labels)
        self.from_model_button = QPushButton("Pre-fill from model…")
        self.from_model_button.setToolTip("Segment this image with a checkpoint and locate the features (missing points only)")
        self.from_model_button.clicked.connect(self._choose_model)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("Pick a feature, choose add mode in the keypoints layer (key 2 or ⊕) and click; drag in select mode (3) to move; Delete removes.")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addWidget(self.open_button)
        layout.addWidget(self.folder_label)
        layout.addWidget(self.image_list, stretch=1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Feature"))
        row.addWidget(self.feature, stretch=1)
        layout.addLayout(row)
        nav = QHBoxLayout()
        nav.addWidget(self.prev_button)
        nav.addWidget(self.next_button)
        layout.addLayout(nav)
        fill = QHBoxLayout()
        fill.addWidget(self.from_labels_button)
        fill.addWidget(self.from_model_button)
        layout.addLayout(fill)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self._enable(False)
        for key, step in (("PageDown", self.next_image), ("PageUp", self.previous_image)):
            viewer.bind_key(key, lambda _v, f=step: f(), overwrite=True)

    # -- folder and navigation ------------------------------------------------------------------
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images to label")
        if folder:
            self.open_folder(folder)

    def open_folder(self, folder: str | Path, csv_path: str | Path | None = None) -> None:
        """Open ``folder`` (its ``keypoints.csv`` is created when absent) and show the first image."""
        self.commit()
        try:
            self.labels = KeypointLabels(folder, csv_path)
        except (OSError, ValueError) as e:
            self.status.setText(f"cannot open {folder}: {e}")
            return
        self.folder_label.setText(f"{self.labels.folder}\npoints: {self.labels.csv_path.name}")
        self.image_list.blockSignals(True)
        self.image_list.clear()
        for path in self.labels.images:
            self.image_list.addItem(QListWidgetItem(path.name))
        self.image_list.blockSignals(False)
        self._refresh_counts()
        self._enable(True)
        self.show_image(0)

    def show_image(self, index: int) -> None:
        """Save pending changes, then show image ``index`` and its points."""
        if self.labels is None or not 0 <= index < len(self.labels.images):
            return
        self.commit()
        path = self.labels.images[index]
        try:
            self.image = read_image(path, convert="mean")
        except (OSError, ValueError) as e:
            self.status.setText(f"cannot read {path.name}: {e}")
            return
        self.index = index
        self.image_list.blockSignals(True)
        self.image_list.setCurrentRow(index)
        self.image_list.blockSignals(False)
        self._show_layers()
        self.status.setText(f"{path.name}: {self.labels.count(path.name)} point(s)")

    def next_image(self) -> None:
        self.show_image(self.index + 1)

    def previous_image(self) -> None:
        self.show_image(self.index - 1)

    def _on_row(self, row: int) -> None:
        if row != self.index:
            self.show_image(row)

    @property
    def current_name(self) -> str | None:
        return None if self.labels is None or self.index < 0 else self.labels.images[self.index].name

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
        finally:
            self._syncing = False
        self.viewer.layers.selection.active = layer

    def _on_feature(self, name: str) -> None:
        if POINTS_LAYER in self.viewer.layers:
            layer = self.viewer.layers[POINTS_LAYER]
            layer.feature_defaults = {"feature": name}

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
        pixel_size = self.image.metadata.pixel_size if self.image is not None else None
        try:
            changed = self.labels.set_points(name, latest, pixel_size)
        except OSError as e:
            self.status.setText(f"could not save {self.labels.csv_path}: {e}")
            return False
        if len(latest) != len(layer.data):  # a feature placed twice: show only the kept one
            self._load_points()
        if changed:
            self._refresh_counts()
            self.status.setText(f"{name}: {len(latest)} point(s), saved to {self.labels.csv_path.name}")
        return changed

    def _refresh_counts(self) -> None:
        if self.labels is None:
            return
        for i, path in enumerate(self.labels.images):
            n = self.labels.count(path.name)
            self.image_list.item(i).setText(f"{'✓' if n else '·'} {path.name}" + (f"  ({n})" if n else ""))

    def _enable(self, on: bool) -> None:
        for w in (self.prev_button, self.next_button, self.from_labels_button, self.from_model_button, self.feature):
            w.setEnabled(on)

    # -- pre-fill -------------------------------------------------------------------------------
    def _add_missing(self, found, source: str) -> int:
        assert self.labels is not None and self.current_name is not None
        current = {f: (p.x, p.y) for f, p in self.labels.points(self.current_name).items()}
        new = {f.name: f.px for f in found if f.px is not None and f.name not in current and f.name != "ImageCentre"}
        if new:
            pixel_size = self.image.metadata.pixel_size if self.image is not None else None
            for feature, (x, y) in new.items():
                self.labels.set_point(self.current_name, feature, x, y, pixel_size, source)
            self._load_points()
            self._refresh_counts()
        self.status.setText(f"{self.current_name}: pre-filled {len(new)} point(s) from {source}; correct them by dragging")
        return len(new)

    def prefill_from_labels(self) -> int:
        """Locate every feature in ``labels/<image>`` and add those not placed yet."""
        if self.labels is None or self.image is None or self.current_name is None:
            return 0
        self.commit()
        mask_path = self.labels.folder / "labels" / self.current_name
        if not mask_path.exists():
            self.status.setText(f"no label mask for {self.current_name} in labels/")
            return 0
        from napari_fibsem.core.classes import ClassMap

        cmap = ClassMap.for_folder(self.labels.folder)
        try:
            mask = read_labels(mask_path, cmap, shape=self.image.data.shape)
        except (OSError, ValueError) as e:
            self.status.setText(str(e))
            return 0
        found = detect_features(None, mask=mask, class_map=cmap, pixel_size=self.image.metadata.pixel_size or 1.0)
        return self._add_missing(found, "labels")

    def _choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint (bundle, OpenFIBSEM .pt, ONNX)")
        if path:
            self.prefill_from_model(path)

    def prefill_from_model(self, checkpoint: str | Path) -> None:
        """Segment the current image with ``checkpoint`` off the UI thread, then add missing points."""
        if self.image is None or self._worker is not None:
            return
        self.commit()
        image, name = self.image, self.current_name
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.from_model_button.setEnabled(False)
        self.status.setText(f"segmenting {name} with {Path(checkpoint).name}…")

        def done(result: tuple[Any, str]) -> None:
            found, error = result
            self._worker = None
            self.progress.setVisible(False)
            self.from_model_button.setEnabled(True)
            if error:
                self.status.setText(f"pre-fill failed: {error}")
            elif self.current_name == name:  # the person may have moved on meanwhile
                self._add_missing(found, Path(checkpoint).stem)

        self._worker = start_worker(_detect_with_model, checkpoint, image, on_returned=done,
                                    on_errored=lambda e: done((None, f"{type(e).__name__}: {e}")), owner=self)  # fmt: skip

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.commit()
        super().closeEvent(event)


def _detect_with_model(checkpoint: str | Path, image: FibsemImage) -> tuple[Any, str]:
    """Worker body: ``(detected features, "")`` or ``(None, error message)`` for errors a user can fix."""
    from napari_fibsem.widgets._llvm_guard import preload_triton

    preload_triton()
    from napari_fibsem.core.models import load_model

    try:
        model = load_model(checkpoint)
        return detect_features(image, model, pixel_size=image.metadata.pixel_size or 1.0), ""
    except (OSError, ValueError, ImportError) as e:
        return None, str(e)
