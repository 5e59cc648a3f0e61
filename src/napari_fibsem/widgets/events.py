"""Detect events in a movie layer with a trained event model (``events train``'s ``best.pt``).

A thin view over :func:`~napari_fibsem.core.events.predict.predict_movie`: pick a T x H x W image
layer and a bundle, Run. Loading the bundle and scoring the movie happen in a worker thread
(``NAPARI_FIBSEM_NOTHREADS=1`` runs them inline); progress arrives per frame through a Qt signal
and Stop ends the run after the frame in progress. The events appear as a Points layer
``<layer> events`` (frame, y, x; coloured and sized by score) over the movie, optionally with the
score map as an additive image, and Save CSV writes them as a napari points CSV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_fibsem.core.training.progress import StopFlag
from napari_fibsem.widgets._common import ProgressRelay, start_worker

if TYPE_CHECKING:
    import napari

    from napari_fibsem.core.events.model import EventModel
    from napari_fibsem.core.events.predict import EventPrediction

SCORE_COLORMAP = "magma"
POINT_COLORMAP = "plasma"


@dataclass(frozen=True)
class _Outcome:
    model: EventModel | None = None
    result: EventPrediction | None = None
    error: str | None = None



def _load(path: Path) -> EventModel:
    from napari_fibsem.core.events.model import load_event_bundle

    return load_event_bundle(path)


def load_model(path: Path) -> _Outcome:
    """Worker body: the bundle, or the message of an error the user can fix."""
    try:
        return _Outcome(model=_load(path))
    except (OSError, ValueError, ImportError) as e:
        return _Outcome(error=str(e))


def detect(data: Any, model: EventModel | None, path: Path, threshold: float, tile: int,
           relay: ProgressRelay, stop: StopFlag) -> _Outcome:  # fmt: skip
    """Worker body: load the bundle when needed, read the layer's data, score it, find events."""
    try:
        model = model if model is not None else _load(path)
        from napari_fibsem.core.events.predict import predict_movie

        movie = np.asarray(data)
        result = predict_movie(movie, model, tile=tile, threshold=threshold,
                               on_progress=relay.progressed.emit, should_stop=stop)  # fmt: skip
        return _Outcome(model=model, result=result)
    except (OSError, ValueError, ImportError, RuntimeError) as e:
        return _Outcome(model=model, error=str(e))


class EventsWidget(QWidget):
    """Dock widget: movie layer + event bundle -> events Points layer (and score map)."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.model: EventModel | None = None
        self.model_path: Path | None = None
        self.result: EventPrediction | None = None
        self.result_layer: str | None = None
        self._worker: Any = None
        self._busy = False
        self._stop = StopFlag()
        stop = self._stop
        self.destroyed.connect(lambda *_: stop.set())  # closing napari mid-run ends the run
        self._relay = ProgressRelay()
        self._relay.progressed.connect(self._on_progress)

        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("A movie: an image layer of T x H x W")
        self.model_button = QPushButton("Model bundle…")
        self.model_button.clicked.connect(self._choose_model)
        self.model_label = QLabel("no model")
        self.model_label.setWordWrap(True)
        self.threshold = QDoubleSpinBox(decimals=2, minimum=0.01, maximum=0.99, singleStep=0.05, value=0.5)
        self.threshold.setToolTip(
            "Events grow from pixels scoring at least this; set to the bundle's on loading"
        )
        self.tile = QSpinBox(minimum=32, maximum=4096, singleStep=64, value=256)
        self.tile.setToolTip("Frames larger than this are scored in overlapping tiles (px)")
        self.show_scores = QCheckBox("Show score map")
        self.show_scores.setChecked(True)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.save_button = QPushButton("Save CSV…")
        self.save_button.clicked.connect(self._choose_csv)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel(
            "Choose a movie layer and an event model (best.pt from `napari-fibsem events train`)."
        )
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Movie", self.layer_combo)
        form.addRow("Model", self.model_button)
        form.addRow(self.model_label)
        form.addRow("Threshold", self.threshold)
        form.addRow("Tile", self.tile)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.show_scores)
        buttons = QHBoxLayout()
        for b in (self.run_button, self.stop_button, self.save_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

        for ev in (
            viewer.layers.events.inserted,
            viewer.layers.events.removed,
            viewer.layers.events.reordered,
        ):
            ev.connect(self._refresh_layers)
        self._refresh_layers()
        self._update_buttons()

    # -- inputs ---------------------------------------------------------------------------------
    def _movie_layers(self) -> list[Any]:
        from napari.layers import Image

        return [lay for lay in self.viewer.layers
                if isinstance(lay, Image) and not lay.rgb and not lay.multiscale and lay.ndim == 3]  # fmt: skip

    def _refresh_layers(self, *_: Any) -> None:
        current = self.layer_combo.currentText()
        names = [lay.name for lay in self._movie_layers()]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)
        self._update_buttons()

    def _choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Event model bundle", "", "Bundles (*.pt *.pth);;All files (*)"
        )
        if path:
            self.set_model(path)

    def set_model(self, path: str | Path) -> None:
        """Load the bundle in the background; its threshold becomes the default."""
        if self._busy:
            return
        self.model, self.model_path = None, Path(path)
        self.model_label.setText(self.model_path.name)
        self.status.setText(f"loading {self.model_path.name}…")
        self._start(load_model, self.model_path)

    # -- running --------------------------------------------------------------------------------
    def run(self) -> bool:
        """Score the chosen layer in the background; False when there is nothing to run."""
        layer = next(
            (lay for lay in self._movie_layers() if lay.name == self.layer_combo.currentText()), None
        )
        if self._busy or layer is None or self.model_path is None:
            return False
        self.result, self.result_layer = None, layer.name
        self._stop.clear()
        self.status.setText(f"scoring {layer.name} ({layer.data.shape[0]} frames)…")
        self._start(detect, layer.data, self.model, self.model_path, self.threshold.value(), self.tile.value(),
                    self._relay, self._stop)  # fmt: skip
        return True

    def stop(self) -> None:
        if self._busy:
            self._stop.set()
            self.status.setText("stopping after this frame…")

    def _start(self, func, *args) -> None:
        self._busy = True
        self.progress.setRange(0, 0)  # busy until the first frame is done
        self.progress.setVisible(True)
        self._update_buttons()
        self._worker = start_worker(
            func,
            *args,
            on_returned=self._on_returned,
            on_errored=lambda e: self._on_returned(_Outcome(error=f"{type(e).__name__}: {e}")),
            owner=self,
        )

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.progress.setFormat(f"frame {done}/{total}")

    def _on_returned(self, outcome: _Outcome) -> None:
        self._busy, self._worker = False, None
        self.progress.setVisible(False)
        if outcome.model is not None and self.model is None and outcome.result is None:
            self.model = outcome.model  # loaded by set_model: its threshold becomes the default
            self.threshold.setValue(float(self.model.threshold))
            self.model_label.setText(
                f"{self.model_path.name if self.model_path else 'model'}: {self.model.n_frames} frames, "
                f"threshold {self.model.threshold:.2f}"
            )
        if outcome.error is not None:
            self.status.setText(f"failed: {outcome.error}")
        elif outcome.result is not None:
            self.model = outcome.model
            self._show(outcome.result)
        elif self.model is not None:
            self.status.setText(f"model loaded (threshold {self.model.threshold:.2f}); Run scores the movie")
        self._update_buttons()

    # -- results --------------------------------------------------------------------------------
    def _show(self, result: EventPrediction) -> None:
        if result.cancelled:
            self.status.setText(f"stopped after {result.frames_done} frame(s); nothing shown")
            return
        self.result = result
        name = self.result_layer or "movie"
        source = self.viewer.layers[name] if name in self.viewer.layers else None
        place = {"scale": source.scale, "translate": source.translate} if source is not None else {}
        if self.show_scores.isChecked():
            self._replace(f"{name} scores", lambda: self.viewer.add_image(
                result.scores, name=f"{name} scores", blending="additive", colormap=SCORE_COLORMAP,
                contrast_limits=(0.0, 1.0), **place))  # fmt: skip
        scores = np.array([e.score for e in result.events], dtype=np.float32)
        base = max(4.0, min(result.scores.shape[1:]) / 25)
        style: dict[str, Any] = {"face_color": "#ffcc00"}
        if len(scores):
            style = {
                "face_color": "score",
                "face_colormap": POINT_COLORMAP,
                "face_contrast_limits": (0.0, 1.0),
            }
        self._replace(f"{name} events", lambda: self.viewer.add_points(
            result.points(), ndim=3, name=f"{name} events", features={"score": scores},
            size=base * (0.6 + 0.8 * scores) if len(scores) else base, border_color="white", border_width=0.08,
            opacity=0.9, **style, **place))  # fmt: skip
        self.status.setText(f"{len(result.events)} event(s) at threshold {result.threshold:.2f} in {name}")

    def _replace(self, name: str, add) -> None:
        """Layers are rebuilt on each run (their styling depends on what was found)."""
        layers = self.viewer.layers
        index = layers.index(name) if name in layers else None
        if index is not None:
            layers.remove(name)
        layer = add()
        if index is not None:
            layers.move(layers.index(layer), index)

    def _choose_csv(self) -> None:
        default = f"{self.result_layer or 'movie'}_events.csv"
        path, _ = QFileDialog.getSaveFileName(self, "Save events", default, "CSV (*.csv)")
        if path:
            self.save_csv(path)

    def save_csv(self, path: str | Path) -> Path | None:
        """Write the events as a napari points CSV (``index, axis-0, axis-1, axis-2, score``)."""
        if self.result is None:
            return None
        try:
            out = self.result.to_csv(path)
        except OSError as e:
            self.status.setText(f"could not save {path}: {e}")
            return None
        self.status.setText(f"saved {len(self.result.events)} event(s) to {out}")
        return out

    def _update_buttons(self) -> None:
        self.run_button.setEnabled(
            not self._busy and self.model_path is not None and self.layer_combo.count() > 0
        )
        self.stop_button.setEnabled(self._busy)
        self.model_button.setEnabled(not self._busy)
        self.save_button.setEnabled(not self._busy and self.result is not None)
