"""Validate a detection during an automated run: drag the points, fix the mask, Accept / Skip / Stop.

A thin view over :class:`~napari_fibsem.core.workflow.ValidationBroker`: the workflow's worker
thread asks through the broker and blocks; this widget shows the image, the model's mask (an
editable Labels layer) and the detected features (a Points layer whose points a person drags),
with the dx/dy between two chosen features in micrometres. Accept hands back the corrected
features (and the mask, if edited); Skip declines to act; Stop cancels the run. It works docked
(``connect_broker``) or as a pop-up (:func:`validation_popup`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_fibsem._colormap import labels_colormap
from napari_fibsem.core.classes import ClassMap
from napari_fibsem.core.detection import CATALOGUE, DetectedFeatures
from napari_fibsem.core.workflow import ValidationBroker, ValidationRequest, ValidationResult

if TYPE_CHECKING:
    import napari

IMAGE_LAYER, MASK_LAYER, POINTS_LAYER = "validation image", "validation mask", "detected features"


class _Relay(QObject):
    """Moves the broker's request (emitted in the worker thread) onto the UI thread."""

    request = Signal(object)


class ValidationWidget(QWidget):
    """Shows one :class:`ValidationRequest` at a time and answers it."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.request: ValidationRequest | None = None
        self.broker: ValidationBroker | None = None
        self.answers: list[ValidationResult] = []
        self._relay = _Relay()
        self._relay.request.connect(self.show_request)
        self.title = QLabel("Waiting for a detection to validate…")
        self.title.setWordWrap(True)
        self.from_feature, self.to_feature = QComboBox(), QComboBox()
        for box in (self.from_feature, self.to_feature):
            box.currentTextChanged.connect(self._update_readout)
        self.readout = QLabel("dx = –, dy = –")
        self.accept_button, self.skip_button, self.stop_button = QPushButton("Accept"), QPushButton("Skip"), QPushButton("Stop")
        self.accept_button.setToolTip("Act on the points as they are now (after your corrections)")
        self.skip_button.setToolTip("Do not act on this detection; the run goes on")
        self.stop_button.setToolTip("Stop the automated run")
        self.accept_button.clicked.connect(self.accept)
        self.skip_button.clicked.connect(self.skip)
        self.stop_button.clicked.connect(self.stop)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        row = QHBoxLayout()
        row.addWidget(QLabel("from"))
        row.addWidget(self.from_feature, 1)
        row.addWidget(QLabel("to"))
        row.addWidget(self.to_feature, 1)
        layout.addLayout(row)
        layout.addWidget(self.readout)
        row = QHBoxLayout()
        for b in (self.accept_button, self.skip_button, self.stop_button):
            row.addWidget(b)
        layout.addLayout(row)
        layout.addStretch(1)
        self._enable(False)

    def connect_broker(self, broker: ValidationBroker) -> None:
        """Answer ``broker``'s requests here (they may come from any thread)."""
        self.broker = broker
        broker.requested.connect(self._relay.request.emit)

    # -- showing --------------------------------------------------------------------------------
    def show_request(self, request: ValidationRequest) -> None:
        self.request = request
        det = request.detected
        layers = self.viewer.layers
        for name in (POINTS_LAYER, MASK_LAYER):
            if name in layers:
                layers.remove(name)
        if IMAGE_LAYER in layers:
            layers[IMAGE_LAYER].data = request.image.data
            layers[IMAGE_LAYER].reset_contrast_limits()
        else:
            self.viewer.add_image(request.image.data, name=IMAGE_LAYER)
        if det.mask is not None:
            mask_layer = self.viewer.add_labels(np.array(det.mask, copy=True), name=MASK_LAYER, opacity=0.35)
            mask_layer.colormap = labels_colormap(ClassMap.default())
        found = [f for f in det if f.px is not None]
        layer = self.viewer.add_points(
            np.array([[f.px[1], f.px[0]] for f in found]).reshape(-1, 2),
            name=POINTS_LAYER,
            features={"feature": np.array([f.name for f in found], dtype=object)},
            feature_defaults={"feature": request.feature},
            face_color="feature",
            face_color_cycle={n: s.color for n, s in CATALOGUE.items()},
            size=max(8, det.shape[0] // 50),
            text={"string": "{feature}", "size": 9, "color": "white", "anchor": "upper_left"},
        )
        layer.mode = "select"
        layer.events.data.connect(self._update_readout)
        names = [f.name for f in found]
        for box, default in ((self.from_feature, "ImageCentre"), (self.to_feature, request.feature)):
            box.blockSignals(True)
            box.clear()
            box.addItems(names)
            if default in names:
                box.setCurrentText(default)
            box.blockSignals(False)
        missing = "; ".join(f"{k}: {v}" for k, v in det.missing.items())
        self.title.setText(f"<b>{request.step}</b>: check {request.feature} ({request.reason})"
                           + (f"<br>not found: {missing}" if missing else ""))  # fmt: skip
        self._update_readout()
        self._enable(True)
        self.viewer.reset_view()

    def current_features(self) -> DetectedFeatures | None:
        """The request's features with the points where the person left them."""
        if self.request is None or POINTS_LAYER not in self.viewer.layers:
            return None
        layer = self.viewer.layers[POINTS_LAYER]
        features = self.request.detected
        for (y, x), name in zip(layer.data, layer.features["feature"]):
            if name in features.features:
                features = features.with_point(str(name), float(x), float(y))
        return features

    def _update_readout(self, *_: Any) -> None:
        features = self.current_features()
        a, b = self.from_feature.currentText(), self.to_feature.currentText()
        if features is None or not a or not b:
            self.readout.setText("dx = –, dy = –")
            return
        dx, dy = features.offset_between_m(a, b)
        self.readout.setText(f"dx = {dx * 1e6:+.2f} µm, dy = {dy * 1e6:+.2f} µm  (+x right, +y up)")

    # -- answering ------------------------------------------------------------------------------
    def _answer(self, result: ValidationResult) -> None:
        self.answers.append(result)
        self._enable(False)
        self.title.setText(f"{result.action}: waiting for the next detection…")
        if self.broker is not None:
            self.broker.answer(result)

    def accept(self) -> None:
        if self.request is None:
            return
        mask = None
        if MASK_LAYER in self.viewer.layers and self.request.detected.mask is not None:
            edited = np.asarray(self.viewer.layers[MASK_LAYER].data)
            if not np.array_equal(edited, self.request.detected.mask):
                mask = edited.astype(np.uint8)
        self._answer(ValidationResult("accept", self.current_features(), mask))

    def skip(self) -> None:
        if self.request is not None:
            self._answer(ValidationResult("skip", self.request.detected))

    def stop(self) -> None:
        self._enable(False)
        self.title.setText("stopped")
        if self.broker is not None:
            self.broker.cancel()

    def _enable(self, on: bool) -> None:
        for b in (self.accept_button, self.skip_button, self.stop_button):
            b.setEnabled(on)
        self.stop_button.setEnabled(self.broker is not None or on)


def validation_popup(viewer: napari.viewer.Viewer, broker: ValidationBroker) -> ValidationWidget:
    """Dock a validation widget answering ``broker`` (what a running workflow opens)."""
    widget = ValidationWidget(viewer)
    widget.connect_broker(broker)
    viewer.window.add_dock_widget(widget, name="Validate detection", area="right")
    return widget
