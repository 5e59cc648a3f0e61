"""The milling part of the microscope widget: patterns drawn as napari shapes on the ion image.

A Shapes layer ("milling patterns") sits on the ion image layer with the same scale and
translate, so its data coordinates are the ion image's pixel coordinates (row, col; pixel
centres at integers, row down). :func:`shapes_to_patterns` turns those shapes into the core's
patterns, image-plane metres from the image centre with +x right and +y **up**:

    x = (col - (w - 1) / 2) * pixel_size,    y = ((h - 1) / 2 - row) * pixel_size

rectangle -> ``RectanglePattern`` (rotation counter-clockwise, folded into ±45° by naming the
more horizontal edge the width), line -> ``LinePattern``, path -> one ``LinePattern`` per
segment, polygon -> ``PolygonPattern``, ellipse -> ``CirclePattern`` (only when it is a circle).
The shapes are read when "Estimate" or "Mill" is pressed, so edits made before count.

Milling runs in the widget's worker: set the ion beam up, ``run_milling`` with a progress
callback (relayed to the UI thread by a Qt signal) and a stop event, restore the ion beam's
imaging settings, re-acquire the ion image so the trench shows.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QDoubleSpinBox, QFormLayout, QHBoxLayout, QProgressBar, QPushButton, QWidget

from napari_fibsem.core.microscope import (
    CirclePattern,
    LinePattern,
    MicroscopeError,
    MillingProgress,
    MillingResult,
    MillingSettings,
    Pattern,
    PolygonPattern,
    RectanglePattern,
)

if TYPE_CHECKING:
    from napari_fibsem.widgets.microscope import MicroscopeWidget

PATTERN_LAYER = "milling patterns"
CIRCLE_TOLERANCE = 0.02  # an ellipse whose axes differ by more (relative) is refused
_EDGE = 1e-6  # px: vertices this far past the image edge still count as inside


def metre_units() -> dict[str, Any]:
    """``add_image`` / ``add_shapes`` keyword giving a layer metre units (napari >= 0.6; none before)."""
    from napari.layers import Layer

    return {"units": ("m", "m")} if hasattr(Layer, "units") else {}


class PatternError(ValueError):
    """A shape cannot be milled; the message names the shape (1-based) and why."""


def pixels_to_metres(points: np.ndarray, image_shape: tuple[int, int], pixel_size: float) -> np.ndarray:
    """(N, 2) (row, col) pixel coordinates -> (N, 2) (x, y) metres from the centre, +y up."""
    h, w = image_shape
    points = np.asarray(points, dtype=float)[:, -2:]
    x = (points[:, 1] - (w - 1) / 2) * pixel_size
    y = ((h - 1) / 2 - points[:, 0]) * pixel_size
    return np.stack([x, y], axis=1)


def _fold(angle: float) -> float:
    """An edge direction as an angle in [-pi/2, pi/2) (an edge has no sense of direction)."""
    folded = (angle + math.pi / 2) % math.pi - math.pi / 2
    return 0.0 if abs(folded) < 1e-12 else folded


def _rectangle(v: np.ndarray, depth: float, n: int) -> RectanglePattern:
    centre = v.mean(axis=0)
    e1, e2 = v[1] - v[0], v[2] - v[1]
    a1 = _fold(math.atan2(e1[1], e1[0]))
    width_edge, height_edge = (e1, e2) if abs(a1) <= math.pi / 4 + 1e-12 else (e2, e1)
    width, height = float(np.hypot(*width_edge)), float(np.hypot(*height_edge))
    if width <= 0 or height <= 0:
        raise PatternError(f"shape {n} (rectangle) has no area")
    rotation = _fold(math.atan2(width_edge[1], width_edge[0]))
    return RectanglePattern(float(centre[0]), float(centre[1]), width, height, depth, rotation)


def _circle(v: np.ndarray, depth: float, n: int) -> CirclePattern:
    a, b = float(np.hypot(*(v[1] - v[0]))) / 2, float(np.hypot(*(v[2] - v[1]))) / 2
    if min(a, b) <= 0:
        raise PatternError(f"shape {n} (ellipse) has no area")
    if abs(a - b) > CIRCLE_TOLERANCE * max(a, b):
        raise PatternError(
            f"shape {n} is an ellipse ({2 * a * 1e6:.2f} x {2 * b * 1e6:.2f} µm), not a circle; only circles "
            "can be milled: hold Shift while drawing it, or draw a polygon"
        )
    centre = v.mean(axis=0)
    return CirclePattern(float(centre[0]), float(centre[1]), (a + b) / 2, depth)


def shapes_to_patterns(
    shapes: Sequence[np.ndarray],
    shape_types: Sequence[str],
    image_shape: tuple[int, int],
    pixel_size: float,
    depth: float,
) -> list[Pattern]:
    """Milling patterns (image metres, +y up) of napari shapes given in the image's pixel
    coordinates. Raises :class:`PatternError` for a shape outside the image or one that cannot
    be milled; nothing is converted then."""
    h, w = image_shape
    patterns: list[Pattern] = []
    for n, (data, kind) in enumerate(zip(shapes, shape_types), start=1):
        px = np.asarray(data, dtype=float)[:, -2:]
        rows, cols = px[:, 0], px[:, 1]
        if (
            rows.min() < -0.5 - _EDGE
            or rows.max() > h - 0.5 + _EDGE
            or cols.min() < -0.5 - _EDGE
            or (cols.max() > w - 0.5 + _EDGE)
        ):
            raise PatternError(f"shape {n} ({kind}) reaches outside the ion image ({w} x {h} px)")
        v = pixels_to_metres(px, image_shape, pixel_size)
        if kind == "rectangle":
            patterns.append(_rectangle(v, depth, n))
        elif kind == "ellipse":
            patterns.append(_circle(v, depth, n))
        elif kind in ("line", "path"):
            segments = [(a, b) for a, b in zip(v[:-1], v[1:]) if np.hypot(*(b - a)) > 0]
            if not segments:
                raise PatternError(f"shape {n} ({kind}) has no length")
            patterns.extend(LinePattern(*map(float, (*a, *b)), depth=depth) for a, b in segments)
        elif kind == "polygon":
            if len(v) < 3:
                raise PatternError(f"shape {n} (polygon) needs at least 3 vertices")
            patterns.append(PolygonPattern(tuple(map(tuple, v)), depth))
        else:
            raise PatternError(f"shape {n} is a {kind}, which cannot be milled")
    return patterns


class _Relay(QObject):
    """Carries progress reports from the worker thread to the UI thread (a queued signal)."""

    progress = Signal(object)


class MillingPanel(QWidget):
    """Depth, current, Estimate / Mill / Stop and a progress bar, driving ``host``'s microscope."""

    def __init__(self, host: MicroscopeWidget) -> None:
        super().__init__(host)
        self.host = host
        self.depth = QDoubleSpinBox(decimals=2, minimum=0.01, maximum=100.0, value=1.0, suffix=" µm")
        self.current = QDoubleSpinBox(decimals=3, minimum=0.001, maximum=100.0, value=2.0, suffix=" nA")
        self.estimate_button = QPushButton("Estimate time")
        self.estimate_button.clicked.connect(lambda: self.estimate())
        self.mill_button = QPushButton("Mill")
        self.mill_button.clicked.connect(lambda: self.mill())
        self.stop_button = QPushButton("Stop milling")
        self.stop_button.clicked.connect(lambda: self.stop())
        self.progress = QProgressBar(minimum=0, maximum=1000, value=0)
        self.progress.setFormat("%p%")
        self.last_progress: MillingProgress | None = None
        self.last_result: MillingResult | None = None
        self._stop: threading.Event | None = None
        self._relay = _Relay(self)
        self._relay.progress.connect(self._on_progress)

        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addRow("Depth", self.depth)
        layout.addRow("Current", self.current)
        row = QHBoxLayout()
        for b in (self.estimate_button, self.mill_button, self.stop_button):
            row.addWidget(b)
        layout.addRow(row)
        layout.addRow(self.progress)
        self.update_buttons()

    # -- the shapes layer ------------------------------------------------------------------------
    @property
    def layer(self) -> Any:
        layers = self.host.viewer.layers
        return layers[PATTERN_LAYER] if PATTERN_LAYER in layers else None

    def attach(self, ion_layer: Any) -> None:
        """Put the patterns layer on ``ion_layer`` (same scale and translate); when the ion image's
        pixel grid changed, move the shapes so they keep their place in image metres."""
        image = ion_layer.metadata["fibsem_image"]
        grid = (tuple(image.data.shape), float(image.metadata.pixel_size))
        layer = self.layer
        if layer is None:
            viewer = self.host.viewer
            active = viewer.layers.selection.active
            layer = viewer.add_shapes(
                name=PATTERN_LAYER,
                scale=ion_layer.scale,
                translate=ion_layer.translate,
                edge_color="orange",
                face_color=[1.0, 0.55, 0.0, 0.25],
                edge_width=2,
                metadata={"grid": grid},
                **metre_units(),
            )
            if active is not None:  # keep the image active: double-click centres, drawing is opt-in
                viewer.layers.selection.active = active
            return
        old = layer.metadata.get("grid")
        if old is not None and old != grid and layer.nshapes:
            (h0, w0), ps0 = old
            (h1, w1), ps1 = grid
            c0, c1 = np.array([(h0 - 1) / 2, (w0 - 1) / 2]), np.array([(h1 - 1) / 2, (w1 - 1) / 2])
            layer.data = [(np.asarray(d)[:, -2:] - c0) * (ps0 / ps1) + c1 for d in layer.data]  # types kept
        layer.metadata["grid"] = grid
        layer.scale = ion_layer.scale
        layer.translate = ion_layer.translate

    def _ion_layer(self) -> Any:
        from napari_fibsem.widgets.microscope import layer_name

        layers = self.host.viewer.layers
        name = layer_name("ion")
        return layers[name] if name in layers else None

    def read_patterns(self) -> tuple[list[Pattern], MillingSettings, Any]:
        """The patterns as drawn now, the milling settings and the ion image they refer to."""
        ion, layer = self._ion_layer(), self.layer
        if ion is None or "fibsem_image" not in ion.metadata:
            raise PatternError("acquire an ion image first: patterns are drawn on it")
        if layer is None or layer.nshapes == 0:
            raise PatternError(f"no patterns: draw rectangles in the {PATTERN_LAYER!r} layer first")
        image = ion.metadata["fibsem_image"]
        ss, st = np.asarray(layer.scale)[-2:], np.asarray(layer.translate)[-2:]
        isc, itr = np.asarray(ion.scale)[-2:], np.asarray(ion.translate)[-2:]
        in_image = [((np.asarray(d)[:, -2:] * ss + st) - itr) / isc for d in layer.data]
        ps = float(image.metadata.pixel_size)
        depth = self.depth.value() * 1e-6
        patterns = shapes_to_patterns(in_image, list(layer.shape_type), image.data.shape, ps, depth)
        settings = MillingSettings(current=self.current.value() * 1e-9, hfw=ps * image.data.shape[1])
        return patterns, settings, image

    # -- actions ---------------------------------------------------------------------------------
    def _prepare(self) -> tuple[list[Pattern], MillingSettings, Any] | None:
        host = self.host
        if host.microscope is None:
            host.status.setText("not connected: connect to the microscope (or the simulator) first")
            return None
        if host.busy:
            host.status.setText(f"busy ({host.task}); try again when it is done")
            return None
        try:
            return self.read_patterns()
        except PatternError as e:
            host.status.setText(f"cannot mill: {e}")
            return None

    def estimate(self) -> None:
        prepared = self._prepare()
        if prepared is None:
            return
        patterns, settings, _ = prepared
        m = self.host.microscope

        def done(seconds: float) -> None:
            self.host.status.setText(
                f"estimated milling time {_duration(seconds)} for {len(patterns)} pattern(s), "
                f"{self.depth.value():g} µm deep at {self.current.value():g} nA"
            )

        self.host._run("estimating", lambda: m.estimate_milling_time(patterns, settings), done)

    def mill(self) -> None:
        """Mill the shapes as drawn now; progress in the bar, "Stop milling" ends it early."""
        prepared = self._prepare()
        if prepared is None:
            return
        patterns, settings, image = prepared
        host, m = self.host, self.host.microscope
        ion_settings = host.settings_like(image)
        stop = self._stop = threading.Event()
        self.last_progress = self.last_result = None
        self.progress.setValue(0)
        on_progress = self._relay.progress.emit

        def call() -> tuple[MillingResult, Any]:
            imaging = m.get_beam_settings("ion")
            m.setup_milling(settings)
            try:
                result = m.run_milling(patterns, on_progress, stop)
            except MicroscopeError:
                with contextlib.suppress(MicroscopeError):
                    m.set_beam_settings(imaging)
                raise
            m.set_beam_settings(imaging)  # back to the imaging current before looking
            return result, m.acquire_image(ion_settings)

        def done(outcome: tuple[MillingResult, Any]) -> None:
            result, new_image = outcome
            self.last_result = result
            host.show_image(new_image)
            if result.completed:
                self.progress.setValue(self.progress.maximum())
                text = f"milled {len(patterns)} pattern(s) in {_duration(result.elapsed)}"
            else:
                text = f"milling stopped after {result.steps_done}/{result.steps_total} steps"
            host.status.setText(f"{text}; ion image re-acquired")

        host._run("milling", call, done)

    def stop(self) -> None:
        """Ask the running milling to stop at its next step (the worker checks the event)."""
        if self._stop is not None and self.host.task == "milling":
            self._stop.set()
            self.host.status.setText("stopping the milling…")
            self.stop_button.setEnabled(False)

    def _on_progress(self, p: MillingProgress) -> None:
        self.last_progress = p
        self.progress.setValue(round(p.fraction * self.progress.maximum()))
        if self.host.task == "milling" and not (self._stop is not None and self._stop.is_set()):
            self.host.status.setText(
                f"milling pattern {p.pattern + 1}: step {p.step}/{p.total}, about {_duration(p.remaining)} left"
            )

    def update_buttons(self) -> None:
        on = self.host.microscope is not None and not self.host.busy
        self.estimate_button.setEnabled(on)
        self.mill_button.setEnabled(on)
        stoppable = self.host.task == "milling" and self._stop is not None and not self._stop.is_set()
        self.stop_button.setEnabled(stoppable)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
