"""The milling part of the microscope dock: patterns drawn as shapes on the ion image, milled.

Patterns are drawn in a Shapes layer (``PATTERN_LAYER``) that lies exactly on the ion image, in
its pixel coordinates; ``core.microscope.patterns`` turns them into the core's patterns. The shapes
are read when "Estimate" or "Mill" is pressed, so edits made before count.

The milling current is one of the ion beam's preset currents (``MicroscopeConfig.preset_currents``),
as on the instrument, not a free number. "Mill" refuses a stale ion image (the stage moved since it
was taken: the patterns would land elsewhere on the sample), then asks for confirmation with what
will be milled (patterns and sizes, depth, current, estimated time) and mills only on Yes.

Milling runs in the widget's worker: check the stage is still where the ion image was taken, set
the ion beam up, ``run_milling`` with a progress callback (relayed to the UI thread by a Qt
signal) and a stop event, restore the ion beam's imaging settings, re-acquire the ion image so the
trench shows. A simulator reports its simulated duration next to the real one.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QWidget,
)

from napari_fibsem.core.microscope import (
    MicroscopeError,
    MillingProgress,
    MillingResult,
    MillingSettings,
    Pattern,
)
from napari_fibsem.core.microscope.patterns import (
    PatternError,
    describe_patterns,
    format_current,
    format_duration,
    milling_summary,
    shapes_to_patterns,
)
from napari_fibsem.widgets._microscope_layers import beam_layer, metre_units, staleness

if TYPE_CHECKING:
    import napari
    from qtpy.QtWidgets import QLabel

    from napari_fibsem.core.microscope import ImageSettings, Microscope, MicroscopeError, StagePosition

__all__ = ["PATTERN_LAYER", "MillingHost", "MillingPanel", "PatternError", "metre_units", "shapes_to_patterns"]

PATTERN_LAYER = "milling patterns"


class MillingHost(Protocol):
    """What the panel uses of the dock that holds it (``MicroscopeWidget``): its connection, its
    worker and its status line. A protocol, so the panel needs no import of that dock."""

    viewer: napari.Viewer
    microscope: Microscope | None
    task: str | None
    stage: StagePosition | MicroscopeError | None
    status: QLabel

    @property
    def busy(self) -> bool: ...
    def _run(self, what: str, call: Callable[[], Any], done: Callable[[Any], None]) -> None: ...
    def tell(self, text: str, level: str | None = None) -> None: ...
    def settings_like(self, image: Any) -> ImageSettings: ...
    def show_image(self, image: Any) -> Any: ...


class _Relay(QObject):
    """Carries progress reports from the worker thread to the UI thread (a queued signal)."""

    progress = Signal(object)


class MillingPanel(QWidget):
    """Depth, preset current, Estimate / Mill / Stop and a progress bar, driving ``host``'s microscope."""

    def __init__(self, host: MillingHost) -> None:
        super().__init__(host)
        self.host = host
        self.depth = QDoubleSpinBox(decimals=2, minimum=0.01, maximum=100.0, value=1.0, suffix=" µm")
        self.current = QComboBox()
        self.current.setToolTip("the ion beam's preset currents (its apertures), as the microscope lists")
        self.current.setPlaceholderText("connect to list the ion beam's currents")
        self.estimate_button = QPushButton("Estimate time")
        self.estimate_button.clicked.connect(lambda: self.estimate())
        self.mill_button = QPushButton("Mill…")
        self.mill_button.setToolTip("asks for confirmation (patterns, depth, current, time) before milling")
        self.mill_button.clicked.connect(lambda: self.mill())
        self.stop_button = QPushButton("Stop milling")
        self.stop_button.clicked.connect(lambda: self.stop())
        self.progress = QProgressBar(minimum=0, maximum=1000, value=0)
        self.progress.setFormat("%p%")
        self.last_progress: MillingProgress | None = None
        self.last_result: MillingResult | None = None
        self.ask: Callable[[str], bool] = self._ask
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

    def set_currents(self, presets: Sequence[float], preferred: float = MillingSettings().current) -> None:
        """Offer ``presets`` (A), keeping the chosen current if it is one, else the one nearest
        ``preferred`` (on a log scale: 3 nA is nearer 2 nA than 1 nA is)."""
        chosen = self.current.currentData()
        self.current.clear()
        for amps in presets:
            self.current.addItem(format_current(amps), float(amps))
        if not presets:
            return
        keep = chosen if chosen in presets else min(presets, key=lambda a: abs(math.log(a / preferred)))
        self.current.setCurrentIndex(list(presets).index(keep))

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

    def read_patterns(self) -> tuple[list[Pattern], MillingSettings, Any]:
        """The patterns as drawn now, the milling settings and the ion image they refer to."""
        ion, layer = beam_layer(self.host.viewer, "ion"), self.layer
        if ion is None or "fibsem_image" not in ion.metadata:
            raise PatternError("acquire an ion image first: patterns are drawn on it")
        if layer is None or layer.nshapes == 0:
            raise PatternError(f"no patterns: draw rectangles in the {PATTERN_LAYER!r} layer first")
        current = self.current.currentData()
        if current is None:
            raise PatternError("no milling current: the ion beam lists no preset currents")
        image = ion.metadata["fibsem_image"]
        ss, st = np.asarray(layer.scale)[-2:], np.asarray(layer.translate)[-2:]
        isc, itr = np.asarray(ion.scale)[-2:], np.asarray(ion.translate)[-2:]
        in_image = [((np.asarray(d)[:, -2:] * ss + st) - itr) / isc for d in layer.data]
        ps = float(image.metadata.pixel_size)
        depth = self.depth.value() * 1e-6
        patterns = shapes_to_patterns(in_image, list(layer.shape_type), image.data.shape, ps, depth)
        settings = MillingSettings(current=float(current), hfw=ps * image.data.shape[1])
        return patterns, settings, image

    # -- actions ---------------------------------------------------------------------------------
    def _prepare(self, milling: bool) -> tuple[list[Pattern], MillingSettings, Any] | None:
        """Patterns, settings and ion image, or None after telling the person why not."""
        host = self.host
        if host.microscope is None:
            host.tell("not connected: connect to the microscope (or the simulator) first", "warning")
            return None
        if host.busy:
            host.tell(f"busy ({host.task}); try again when it is done", "warning")
            return None
        ion = beam_layer(host.viewer, "ion")
        reason = staleness(ion.metadata["fibsem_image"], host.stage) if ion is not None else None
        if milling and reason:  # first: drawing patterns on a stale image is the mistake to stop
            host.tell(f"cannot mill: {_stale(reason)}", "warning")
            return None
        try:
            return self.read_patterns()
        except PatternError as e:
            host.tell(f"cannot mill: {e}", "warning")
            return None

    def estimate(self) -> None:
        prepared = self._prepare(milling=False)
        if prepared is None:
            return
        patterns, settings, _ = prepared
        m = self.host.microscope

        def done(seconds: float) -> None:
            self.host.status.setText(
                f"estimated milling time {format_duration(seconds)} for {describe_patterns(patterns)}, "
                f"{self.depth.value():g} µm deep at {format_current(settings.current)}"
            )

        self.host._run("estimating", lambda: m.estimate_milling_time(patterns, settings), done)

    def mill(self) -> None:
        """Ask, then mill the shapes as drawn now; progress in the bar, "Stop milling" ends it early."""
        prepared = self._prepare(milling=True)
        if prepared is None:
            return
        patterns, settings, image = prepared
        host, m = self.host, self.host.microscope
        estimate = m.estimate_milling_time(patterns, settings)  # arithmetic only, no instrument call
        summary = milling_summary(patterns, self.depth.value() * 1e-6, settings.current, estimate)
        host.status.setText(
            f"confirm: mill {describe_patterns(patterns)}, {self.depth.value():g} µm deep at "
            f"{format_current(settings.current)}, about {format_duration(estimate)}?"
        )
        if not self.ask(summary):
            host.tell("milling cancelled: nothing was milled")
            return
        ion_settings = host.settings_like(image)
        stop = self._stop = threading.Event()
        self.last_progress = self.last_result = None
        self.progress.setValue(0)
        on_progress = self._relay.progress.emit

        def call() -> tuple[MillingResult, Any]:
            reason = staleness(image, m.get_stage_position())  # moved while the person read the dialog?
            if reason:
                raise PatternError(_stale(reason))
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
                text = f"milled {describe_patterns(patterns)} in {_took(result, estimate)}"
            else:
                steps = f"{result.steps_done}/{result.steps_total} steps"
                text = f"milling stopped after {steps}, {_took(result, estimate)}"
            host.tell(f"{text}; ion image re-acquired")

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
            left = format_duration(p.remaining) + (" of simulated time" if p.simulated_s is not None else "")
            self.host.status.setText(
                f"milling pattern {p.pattern + 1}: step {p.step}/{p.total}, about {left} left"
            )

    def update_buttons(self) -> None:
        on = self.host.microscope is not None and not self.host.busy
        self.estimate_button.setEnabled(on)
        self.mill_button.setEnabled(on)
        self.current.setEnabled(on)
        stoppable = self.host.task == "milling" and self._stop is not None and not self._stop.is_set()
        self.stop_button.setEnabled(stoppable)

    def _ask(self, summary: str) -> bool:
        answer = QMessageBox.question(self, "Mill with the ion beam?", summary)
        return answer == QMessageBox.StandardButton.Yes


def _stale(reason: str) -> str:
    return (
        f"the ion image is stale ({reason}): patterns drawn on it would mill the wrong place; "
        "acquire the ion image again and check the patterns"
    )


def _took(result: MillingResult, estimate: float) -> str:
    """How long the run took: a simulator's simulated duration with the real one beside it (never
    a bare real time that contradicts the estimate), an instrument's time with the estimate."""
    real = format_duration(result.elapsed)
    if result.simulated_s is not None:
        return f"{format_duration(result.simulated_s)} of simulated time ({real} real)"
    return f"{real} (estimated {format_duration(estimate)})"
