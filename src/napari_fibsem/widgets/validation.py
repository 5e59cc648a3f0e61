"""Validate a detection during an automated run: drag the points, fix the mask, Accept / Skip / Stop.

A thin view over :class:`~napari_fibsem.core.automation.workflow.ValidationBroker`: the workflow's worker
thread asks through the broker and blocks; this widget shows the image, the model's mask (an
editable Labels layer in paint mode, with its class palette) and the detected features (a Points
layer whose points a person drags), says in words what Accept will do (updated as points move),
and the dx/dy between two chosen features in micrometres. Accept hands back the corrected
features (and the mask, if edited); Skip declines to act; Stop cancels the run. Keys: Enter,
S and Escape (bound on the viewer and on both validation layers). It works docked
(``connect_broker``) or as the Run dock's pop-up (:func:`validation_popup`); opened alone, it
says how to start a run and opens the Run dock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_fibsem.core.automation.workflow import (
    ValidationBroker,
    ValidationRequest,
    ValidationResult,
    describe_accept,
)
from napari_fibsem.core.detection import CATALOGUE, DetectedFeatures
from napari_fibsem.widgets._common import alive
from napari_fibsem.widgets._run_mask import MaskPalette

if TYPE_CHECKING:
    import napari

IMAGE_LAYER, MASK_LAYER, POINTS_LAYER = "validation image", "validation mask", "detected features"
RUN_DOCK = "Run (supervised)"
KEYS = {"Enter": "accept", "S": "skip", "Escape": "stop"}
IDLE_TEXT = (f"No run is asking for validation. Runs start from the <b>{RUN_DOCK}</b> dock "
             "(Plugins &gt; napari-fibsem): pick the microscope, the model and the task, then Start.")  # fmt: skip
HELP_TEXT = ("Drag the points to where the features really are; the mask is editable (select "
             f"'{MASK_LAYER}': paint mode). Keys: <b>Enter</b> Accept · <b>S</b> Skip · <b>Esc</b> Stop")  # fmt: skip


class _Relay(QObject):
    """Moves the broker's request (emitted in the worker thread) onto the UI thread."""

    request = Signal(object)


class ValidationWidget(QWidget):
    """Shows one :class:`ValidationRequest` at a time and answers it."""

    stop_requested = Signal()  # Stop was pressed here (the Run dock stops the whole run)

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.request: ValidationRequest | None = None
        self.broker: ValidationBroker | None = None
        self.answers: list[ValidationResult] = []
        self._relay = _Relay()
        self._relay.request.connect(self.show_request)
        self.title = QLabel(IDLE_TEXT)
        self.title.setWordWrap(True)
        self.open_run_button = QPushButton(f"Open the {RUN_DOCK} dock")
        self.open_run_button.setToolTip("Start a run there; its detections come here to be validated")
        self.open_run_button.clicked.connect(self.open_run_dock)
        self.plan = QLabel("")
        self.plan.setWordWrap(True)
        self.plan.setStyleSheet("font-weight: bold; padding: 4px; border: 1px solid palette(mid);")
        self.help = QLabel(HELP_TEXT)
        self.help.setWordWrap(True)
        self.from_feature, self.to_feature = QComboBox(), QComboBox()
        for box in (self.from_feature, self.to_feature):
            box.currentTextChanged.connect(self._update_readout)
        self.readout = QLabel("dx = –, dy = –")
        self.palette = MaskPalette(viewer)
        self.accept_button, self.skip_button, self.stop_button = (
            QPushButton("Accept (Enter)"), QPushButton("Skip (S)"), QPushButton("Stop (Esc)"))  # fmt: skip
        self.accept_button.setToolTip("Act on the points as they are now (after your corrections)")
        self.skip_button.setToolTip("Do not act on this detection; nothing moves")
        self.stop_button.setToolTip("Stop the automated run; nothing moves")
        self.accept_button.clicked.connect(self.accept)
        self.skip_button.clicked.connect(self.skip)
        self.stop_button.clicked.connect(self.stop)
        self._build_layout()
        self._show_details(False)
        self._enable(False)
        for key, action in KEYS.items():
            viewer.bind_key(key, lambda _v, a=action: self._on_key(a), overwrite=True)

    def _build_layout(self) -> None:
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.open_run_button)
        self.details = QWidget()  # everything that only makes sense while a request is shown
        inner = QVBoxLayout(self.details)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addWidget(self.plan)
        inner.addWidget(self.help)
        row = QHBoxLayout()
        row.addWidget(QLabel("from"))
        row.addWidget(self.from_feature, 1)
        row.addWidget(QLabel("to"))
        row.addWidget(self.to_feature, 1)
        inner.addLayout(row)
        inner.addWidget(self.readout)
        inner.addWidget(QLabel("Mask classes (keys 1-9 with the mask layer selected)"))
        inner.addWidget(self.palette)
        layout.addWidget(self.details)
        row = QHBoxLayout()
        for b in (self.accept_button, self.skip_button, self.stop_button):
            row.addWidget(b)
        layout.addLayout(row)
        layout.addStretch(1)

    def _show_details(self, on: bool) -> None:
        """The idle dock shows only how to start a run; a request shows everything."""
        self.open_run_button.setVisible(not on and self.broker is None)
        self.details.setVisible(on)

    def connect_broker(self, broker: ValidationBroker) -> None:
        """Answer ``broker``'s requests here (they may come from any thread)."""
        self.use_broker(broker)
        broker.requested.connect(self._relay.request.emit)

    def use_broker(self, broker: ValidationBroker) -> None:
        """Answer to ``broker``, whose requests someone else hands to :meth:`show_request`."""
        self.broker = broker
        self.title.setText("A run is going; waiting for its next detection…")
        self._show_details(False)
        self._enable(False)

    def open_run_dock(self) -> Any:
        """Open the Run dock the way the Plugins menu does (no dead end when opened alone)."""
        _dock, widget = self.viewer.window.add_plugin_dock_widget("napari-fibsem", RUN_DOCK)
        return widget

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
            self.palette.attach(mask_layer, request.class_map)
            self._bind_keys(mask_layer)
        layer = self._add_points(request)
        names = [f.name for f in det if f.px is not None]
        for box, default in ((self.from_feature, "ImageCentre"), (self.to_feature, request.feature)):
            box.blockSignals(True)
            box.clear()
            box.addItems(names)
            if default in names:
                box.setCurrentText(default)
            box.blockSignals(False)
        missing = "; ".join(f"{k}: {v}" for k, v in det.missing.items())
        of = f", iteration {request.iteration} of at most {request.iterations}" if request.iterations > 1 else ""
        self.title.setText(f"<b>{request.step}</b>: check {request.feature} ({request.reason}{of})"
                           + (f"<br>not found: {missing}" if missing else ""))  # fmt: skip
        self._show_details(True)
        self._update_readout()
        self._enable(True)
        layers.selection.active = layer
        self.viewer.reset_view()

    def _add_points(self, request: ValidationRequest) -> Any:
        det = request.detected
        found = [f for f in det if f.px is not None]
        layer = self.viewer.add_points(
            np.array([[f.px[1], f.px[0]] for f in found]).reshape(-1, 2),
            name=POINTS_LAYER,
            features={"feature": np.array([f.name for f in found], dtype=object)},
            feature_defaults={"feature": request.feature},
            face_color="feature",
            face_color_cycle={n: s.color for n, s in CATALOGUE.items()},
            size=max(8, det.shape[0] // 50),
            text={"string": "{feature}", "size": 10, "color": "white", "anchor": "upper_left"},
        )
        # a missing feature is placed by a click (add mode); found ones are dragged (select mode)
        layer.mode = "add" if det[request.feature].px is None else "select"
        layer.events.data.connect(self._update_readout)
        self._bind_keys(layer)
        return layer

    def _bind_keys(self, layer: Any) -> None:
        """Enter / S / Escape answer whichever validation layer is selected (before napari's own)."""
        for key, action in KEYS.items():
            layer.bind_key(key, lambda _layer, a=action: self._on_key(a), overwrite=True)

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
        if self.request is not None and features is not None:
            self.plan.setText(describe_accept(self.request, features))
        a, b = self.from_feature.currentText(), self.to_feature.currentText()
        if features is None or not a or not b:
            self.readout.setText("dx = –, dy = –")
            return
        dx, dy = features.offset_between_m(a, b)
        self.readout.setText(f"dx = {dx * 1e6:+.2f} µm, dy = {dy * 1e6:+.2f} µm  (+x right, +y up)")

    # -- answering ------------------------------------------------------------------------------
    def _on_key(self, action: str) -> None:
        if alive(self) and self.accept_button.isEnabled():
            {"accept": self.accept, "skip": self.skip, "stop": self.stop}[action]()

    def _answer(self, result: ValidationResult) -> None:
        self.answers.append(result)
        self._enable(False)
        done = {"accept": "Accepted", "skip": "Skipped"}.get(result.action, result.action)
        self.title.setText(f"{done}; the run goes on, waiting for its next detection…")
        self._show_details(False)
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
        self.title.setText("Stopping the run…")
        self._show_details(False)
        if self.broker is not None:
            self.broker.cancel()
        self.stop_requested.emit()

    def finish(self, lines: list[str]) -> None:
        """The run ended: say how, instead of waiting for a detection that will never come."""
        self.request, self.broker = None, None
        self._enable(False)
        self._show_details(False)
        self.open_run_button.setVisible(False)
        self.title.setText("<br>".join([f"<b>{lines[0]}</b>", *lines[1:]]) if lines else "The run ended.")

    def _enable(self, on: bool) -> None:
        for b in (self.accept_button, self.skip_button, self.stop_button):
            b.setEnabled(on)
        self.stop_button.setEnabled(self.broker is not None or on)


def validation_popup(viewer: napari.viewer.Viewer, broker: ValidationBroker, listen: bool = True) -> ValidationWidget:
    """Dock a validation widget answering ``broker`` (what a running workflow opens); with
    ``listen=False`` the caller hands it the requests (:meth:`ValidationWidget.show_request`)."""
    widget = ValidationWidget(viewer)
    if listen:
        widget.connect_broker(broker)
    else:
        widget.use_broker(broker)
    viewer.window.add_dock_widget(widget, name="Validate detection", area="right")
    return widget
