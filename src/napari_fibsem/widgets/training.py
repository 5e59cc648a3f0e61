"""Train a segmentation model from napari: config form, Start/Stop, progress and live curves.

A thin view over :mod:`napari_fibsem.core.training`: the form builds the same config
``napari-fibsem train --config`` reads, :class:`~napari_fibsem.core.training.Trainer` runs in a
worker thread (``NAPARI_FIBSEM_NOTHREADS=1`` runs it inline) and reports through ``on_progress``;
Stop sets the trainer's stop flag, so the run ends after its current step and saves ``last.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error
from qtpy.QtCore import QObject, Signal
from qtpy.QtGui import QTextOption
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from napari_fibsem._layer_meta import opened_folder
from napari_fibsem.core.errors import ConfigError
from napari_fibsem.core.training.config import TrainingConfig
from napari_fibsem.core.training.progress import Progress, StopFlag, TrainingResult
from napari_fibsem.widgets._common import VerticalScroll, start_worker
from napari_fibsem.widgets._plot import EpochPlot
from napari_fibsem.widgets._training_form import TrainingForm, label_problems

if TYPE_CHECKING:
    import napari

_MONITOR_NAMES = {"mean_fg_iou": "mean foreground IoU", "mean_fg_dice": "mean foreground Dice",
                  "pixel_accuracy": "pixel accuracy", "val_loss": "validation loss", "train_loss": "training loss"}  # fmt: skip


@dataclass(frozen=True)
class RunOutcome:
    """What the worker hands back: a result, or the message of an error the user can fix."""

    result: TrainingResult | None = None
    error: str | None = None


class _Relay(QObject):
    """Carries the trainer's callbacks from its thread to the UI thread (queued Qt signals)."""

    progressed = Signal(object)
    history = Signal(object)
    message = Signal(str)


def run_training(config: TrainingConfig, relay: _Relay, should_stop: StopFlag) -> RunOutcome:
    """Run one training in the calling thread, reporting through ``relay``.

    Errors a user can act on (bad data, a busy save folder, a diverging loss, a missing optional
    package) come back as ``RunOutcome.error``; anything else is a bug and propagates.
    """
    from napari_fibsem.core.training.loop import Trainer
    from napari_fibsem.core.training.progress import TrainingError

    sent = 0
    trainer: Trainer | None = None

    def on_progress(p: Progress) -> None:
        nonlocal sent
        relay.progressed.emit(p)
        if trainer is not None and len(trainer.history) != sent:  # an epoch ended: send the records
            sent = len(trainer.history)
            relay.history.emit([dict(r) for r in trainer.history])

    trainer = Trainer(config, on_progress=on_progress, should_stop=should_stop, write=relay.message.emit)
    try:
        return RunOutcome(result=trainer.run())
    except (ValueError, ImportError, OSError, TrainingError) as e:
        return RunOutcome(error=str(e))


class TrainingWidget(QWidget):
    """Dock widget: fill in (or load) a training config, start and stop the run, watch it learn."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.result: TrainingResult | None = None
        self.error: str | None = None
        self._worker: Any = None
        self._running = False
        self._epochs = 0
        self._stop = StopFlag()
        stop = self._stop
        self.destroyed.connect(lambda *_: stop.set())  # closing napari mid-run stops (and saves) the run
        self._relay = _Relay()
        self._relay.progressed.connect(self._on_progress)
        self._relay.history.connect(self._on_history)
        self._relay.message.connect(self._on_message)

        self.form = TrainingForm()
        self.load_button = QPushButton("Load config YAML…")
        self.save_button = QPushButton("Save config YAML…")
        self.layer_button = self.form.data_paths.add_button(
            "layer", "Use the folder the selected layer was opened from"
        )
        self.start_button = QPushButton("Start training")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current step and save last.pt (resume from it later)")
        self.stop_button.setEnabled(False)
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #ff6b6b;")
        self.problems.setVisible(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("not started")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.plot = EpochPlot()
        self.best_path = _read_only_line()
        self.last_path = _read_only_line()
        self.use_button = QPushButton("Use this model for proposals in Label segmentation")
        self.use_button.setToolTip("Opens the labelling dock (on the training folder if none is open) with this checkpoint")
        self.use_button.setEnabled(False)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(500)
        self.log.setPlaceholderText("training log")
        self.log.setFixedHeight(90)
        self.log.setWordWrapMode(QTextOption.WrapAtWordBoundaryOrAnywhere)

        files = QHBoxLayout()
        files.addWidget(self.load_button)
        files.addWidget(self.save_button)
        run = QHBoxLayout()
        run.addWidget(self.start_button, 2)
        run.addWidget(self.stop_button, 1)
        results = QFormLayout()
        results.setContentsMargins(0, 0, 0, 0)
        results.addRow("Best", self.best_path)
        results.addRow("Last", self.last_path)
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addLayout(files)
        layout.addWidget(self.form)
        layout.addWidget(self.problems)
        layout.addLayout(run)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.plot)
        layout.addLayout(results)
        layout.addWidget(self.use_button)
        layout.addWidget(self.log)
        layout.addStretch(1)
        outer = QVBoxLayout(self)  # taller than a laptop's dock: scroll rather than stretch the window
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(VerticalScroll(content))

        self.load_button.clicked.connect(self._on_load_clicked)
        self.save_button.clicked.connect(self._on_save_clicked)
        self.layer_button.clicked.connect(self.use_layer_folder)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.use_button.clicked.connect(self.use_for_proposals)
        self._follow_theme()
        if hasattr(viewer, "events") and hasattr(viewer.events, "theme"):
            viewer.events.theme.connect(self._follow_theme)

    # -- public actions (the buttons call these; tests too) -------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> bool:
        """Validate the form and start training; False (with the problems shown) when it is invalid."""
        if self._running:
            return False
        try:
            config = self.form.config()
        except ConfigError as e:
            self.show_problems(label_problems(e.problems))
            return False
        self.show_problems([])
        self.result, self.error = None, None
        self._epochs = config.epochs
        self.plot.clear()
        self.plot.set_epochs(config.epochs)
        self.best_path.clear()
        self.last_path.clear()
        self.log.clear()
        self.progress.setRange(0, 0)  # busy until the first report (model and data set-up)
        self.progress.setFormat("preparing…")
        self.status.setText("preparing the model and data…")
        self._stop.clear()
        self._set_running(True)
        self._worker = start_worker(run_training, config, self._relay, self._stop, on_returned=self._on_returned,
                                    on_errored=self._on_errored, on_finished=self._on_finished, owner=self)  # fmt: skip
        return True

    def stop(self) -> None:
        """Ask the run to stop after its current step; it saves ``last.pt`` for resuming."""
        if self._running:
            self._stop.set()
            self.stop_button.setEnabled(False)
            self.status.setText("stopping after this step and saving last.pt…")

    def load_config_file(self, path: str | Path) -> bool:
        """Fill the form from a training YAML; problems (e.g. folders missing here) are shown."""
        try:
            problems = self.form.load_yaml(path)
        except ConfigError as e:
            self.show_problems([f"{path} not loaded:", *e.problems])
            return False
        self.show_problems([f"loaded {path}, but:", *label_problems(problems)] if problems else [])
        return True

    def save_config_file(self, path: str | Path) -> bool:
        """Write the form as a YAML for ``napari-fibsem train --config``."""
        try:
            problems = self.form.save_yaml(path)
        except ConfigError as e:
            self.show_problems(["not saved:", *label_problems(e.problems)])
            return False
        self.show_problems([f"saved {path}, but:", *label_problems(problems)] if problems else [])
        return True

    def use_layer_folder(self) -> bool:
        """Set the image folder to the one the selected (else any) layer was read from."""
        folder = opened_folder(self.viewer)
        if folder is None:
            self.show_problems(["no layer here was opened from a folder or file"])
            return False
        self.form.data_paths.set_paths([folder])
        self.show_problems([])
        return True

    def show_problems(self, lines: list[str]) -> None:
        # zero-width spaces after path separators let long paths wrap instead of widening the dock
        self.problems.setText("\n".join(lines).replace("/", "/\u200b").replace("\\", "\\\u200b"))
        self.problems.setVisible(bool(lines))

    # -- slots -----------------------------------------------------------------------------------------
    def _on_load_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load training config", "", "YAML (*.yaml *.yml);;All files (*)"
        )
        if path:
            self.load_config_file(path)

    def _on_save_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save training config", "train_config.yaml", "YAML (*.yaml *.yml)"
        )
        if path:
            self.save_config_file(path)

    def _on_progress(self, p: Progress) -> None:
        if p.total > 0:
            self.progress.setRange(0, p.total)
            self.progress.setValue(min(p.step, p.total))
            self.progress.setFormat(f"epoch {p.epoch}/{self._epochs} · step {p.step}/{p.total}")
        parts = []
        if p.loss is not None:
            parts.append(f"loss {p.loss:.4f}")
        iou = p.metrics.get("mean_fg_iou") if p.metrics else None
        if iou is not None:
            parts.append(f"val fg IoU {iou:.3f}")
        if parts and not self._stop():
            self.status.setText(" · ".join(parts))

    def _on_history(self, records: list[dict[str, Any]]) -> None:
        self.plot.set_history(records)

    def _on_message(self, text: str) -> None:
        self.log.appendPlainText(text)

    def _on_returned(self, outcome: RunOutcome) -> None:
        if outcome.error is not None:
            self.error = outcome.error
            show_error(f"training did not run to the end: {outcome.error}")
            self.show_problems(["training did not run to the end:", outcome.error])
            self.status.setText("failed")
            self.progress.setRange(0, max(self.progress.maximum(), 1))
            self.progress.setFormat("failed")
            return
        result = self.result = outcome.result
        assert result is not None
        self.plot.set_history(list(result.history))
        self.best_path.setText(str(result.best_path or ""))
        self.last_path.setText(str(result.last_path or ""))
        self.use_button.setEnabled(bool(result.best_path or result.last_path))
        self.progress.setRange(0, max(result.total_steps, 1))
        self.progress.setValue(result.global_step if result.total_steps else 1)
        best = ""
        if result.best_value is not None:
            name = _MONITOR_NAMES.get(result.monitor, result.monitor)
            best = f"best {name} {result.best_value:.4f} at epoch {result.best_epoch}"
        if result.cancelled:
            self.progress.setFormat(f"stopped at step {result.global_step}/{result.total_steps}")
            self.status.setText(
                f"Stopped after {result.epochs_completed} epoch(s); {best + '; ' if best else ''}"
                "to resume, choose last.pt under Start from."
            )
        else:
            self.progress.setFormat(f"done: {result.epochs_completed} epochs, {result.global_step} steps")
            self.status.setText(f"Done: {best}." if best else "Done.")

    def _on_errored(self, exc: BaseException) -> None:
        """A bug, not a user error: napari shows the traceback; the widget shows the message."""
        self.error = f"{type(exc).__name__}: {exc}"
        show_error(f"training crashed: {self.error}")
        self.show_problems(["training crashed (see the napari notification for details):", self.error])
        self.status.setText("failed")

    def use_for_proposals(self) -> Any:
        """Hand the trained model to the labelling dock (opened from the Plugins menu if needed)."""
        result = self.result
        checkpoint = result and (result.best_path or result.last_path)
        if not checkpoint:
            return None
        _, labelling = self.viewer.window.add_plugin_dock_widget("napari-fibsem", "Label segmentation")
        if labelling.folder is None and self.form.data_paths.paths():
            labelling.open_folder(self.form.data_paths.paths()[0])
        labelling.proposals.set_checkpoint(checkpoint)
        self.status.setText(f"{Path(checkpoint).name} is the labelling dock's model: Propose there.")
        return labelling

    def _on_finished(self) -> None:
        self._worker = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self._running = running
        for w in (self.form, self.load_button, self.start_button):
            w.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def _follow_theme(self, event: Any = None) -> None:
        try:
            from napari.utils.theme import get_theme

            theme = get_theme(self.viewer.theme)
            self.plot.set_colors(theme.text.as_hex(), theme.background.as_hex())
        except Exception:  # no or unknown theme, or this widget is already closed: nothing to repaint
            return


def _read_only_line() -> QLineEdit:
    line = QLineEdit()
    line.setReadOnly(True)
    line.setPlaceholderText("written when training runs")
    line.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
    return line
