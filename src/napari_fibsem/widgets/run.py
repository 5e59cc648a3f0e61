"""Start a supervised run from napari: microscope, model, task, data-engine folder, Start / Stop.

A thin view over :class:`~napari_fibsem.core.automation.run_setup.SupervisedRun`. The run is a generator in
a worker thread; its progress lines fill the step log, and its validation requests arrive
through a :class:`~napari_fibsem.core.automation.workflow.ValidationBroker` and open the validation pop-up
(the Validate dock if one is open, else a new one). Stop is safe at any point: the run stops
before its next acquisition or move, and a validation being waited for is cancelled. The run
ends in a summary here and in the pop-up; failures are napari notifications. The choices are
remembered for the next session (:func:`~napari_fibsem.core.automation.run_setup.save_settings`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_fibsem.core.automation.run_setup import (
    SIMULATOR,
    TASKS,
    RunProgress,
    RunSetup,
    RunSummary,
    SupervisedRun,
    describe_microscope,
    load_settings,
    save_settings,
)
from napari_fibsem.core.automation.workflow import ValidationBroker, ValidationRequest, auto_accept
from napari_fibsem.widgets._common import alive, start_worker, threads_disabled
from napari_fibsem.widgets.validation import ValidationWidget, _Relay, validation_popup

if TYPE_CHECKING:
    import napari


class RunWidget(QWidget):
    """Set up a run, start and stop it, follow its steps, read its summary."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.run: SupervisedRun | None = None
        self.summary: RunSummary | None = None
        self.popup: ValidationWidget | None = None
        self._worker: Any = None
        self._current: list[SupervisedRun] = []  # the running run, for a dock closed mid-run
        self.destroyed.connect(partial(_stop_all, self._current))
        self._relay = _Relay()
        self._relay.request.connect(self._on_request)
        settings = load_settings()
        self.microscope = QComboBox()
        self.microscope.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.microscope.setMinimumContentsLength(16)
        self.microscope.addItem("simulator", SIMULATOR)
        self.microscope.setItemData(0, describe_microscope(SIMULATOR), Qt.ItemDataRole.ToolTipRole)
        if settings.microscope != SIMULATOR:
            self._add_config(settings.microscope)
        self.config_button = QPushButton("Config YAML…")
        self.config_button.setToolTip("Use the microscope that a configuration YAML file describes")
        self.config_button.clicked.connect(self._choose_config)
        self.checkpoint = QLineEdit(settings.checkpoint)
        self.checkpoint.setPlaceholderText("model checkpoint (.pt bundle, OpenFIBSEM .pt, .onnx)")
        self.model_button = QPushButton("Browse…")
        self.model_button.clicked.connect(self._choose_model)
        self.task = QComboBox()
        self.task.addItems(list(TASKS))
        self.task.setCurrentText(settings.task)
        self.supervised = QCheckBox("supervised (validate every detection)")
        self.supervised.setChecked(settings.supervised)
        self.supervised.setToolTip("Unsupervised runs still ask a person when a feature is not found "
                                   "or a move is larger than the step allows")  # fmt: skip
        self.iterations = QSpinBox()
        self.iterations.setRange(1, 10)
        self.iterations.setValue(settings.max_iterations)
        self.iterations.setToolTip("Moves at most; one more step checks the result")
        self.engine_dir = QLineEdit(settings.engine_dir)
        self.engine_dir.setToolTip("Images, masks and detections.csv of every detection go here")
        self.engine_button = QPushButton("Browse…")
        self.engine_button.clicked.connect(self._choose_engine_dir)
        self.start_button, self.stop_button = QPushButton("Start"), QPushButton("Stop")
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.progress = QProgressBar()
        self.status = QLabel("Set up the run, then Start.")
        self.status.setWordWrap(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setPlaceholderText("the run's steps appear here")
        self.log.setMaximumHeight(150)  # leave the height to the validation pop-up below
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self._build_layout()
        self._set_running(False)

    def _build_layout(self) -> None:
        form = QFormLayout()
        form.addRow("Microscope", _row(self.microscope, self.config_button))
        form.addRow("Model", _row(self.checkpoint, self.model_button))
        form.addRow("Task", self.task)
        form.addRow("", self.supervised)
        form.addRow("Iterations", self.iterations)
        form.addRow("Data engine", _row(self.engine_dir, self.engine_button))
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(_row(self.start_button, self.stop_button, as_layout=True))
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(QLabel("Steps"))
        layout.addWidget(self.log)
        layout.addWidget(self.summary_label)
        layout.addStretch(1)

    # -- choosing -------------------------------------------------------------------------------
    def _add_config(self, path: str) -> None:
        index = self.microscope.findData(path)
        if index < 0:
            self.microscope.addItem(describe_microscope(path), path)
            index = self.microscope.count() - 1
        self.microscope.setCurrentIndex(index)
        self.microscope.setItemData(index, path, Qt.ItemDataRole.ToolTipRole)

    def _choose_config(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Microscope configuration", "", "YAML (*.yaml *.yml)")
        if path:
            self._add_config(path)

    def _choose_model(self) -> None:
        start = str(Path(self.checkpoint.text()).parent) if self.checkpoint.text() else ""
        path, _ = QFileDialog.getOpenFileName(self, "Model checkpoint", start, "Models (*.pt *.pth *.onnx);;All (*)")
        if path:
            self.checkpoint.setText(path)
            save_settings(self.current_setup())  # remembered even if no run starts this session

    def _choose_engine_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Data-engine folder", self.engine_dir.text())
        if folder:
            self.engine_dir.setText(folder)

    def current_setup(self) -> RunSetup:
        return RunSetup(microscope=self.microscope.currentData(), checkpoint=self.checkpoint.text().strip(),
                        task=self.task.currentText(), supervised=self.supervised.isChecked(),
                        engine_dir=self.engine_dir.text().strip(), max_iterations=self.iterations.value())  # fmt: skip

    # -- running --------------------------------------------------------------------------------
    def start(self) -> None:
        """Check the choices, remember them, and start the run in a worker."""
        if self.run is not None:
            return
        setup = self.current_setup()
        problem = _problem(setup)
        if problem:
            self._fail(problem)
            return
        save_settings(setup)
        inline = threads_disabled()  # NAPARI_FIBSEM_NOTHREADS: nobody could answer a pop-up
        if inline and setup.supervised:
            self._fail("a supervised run needs a worker thread; unset NAPARI_FIBSEM_NOTHREADS")
            return
        broker = None if inline else ValidationBroker()
        if broker is not None:
            broker.requested.connect(self._relay.request.emit)
        self.run = SupervisedRun(setup, broker or auto_accept)
        self._current[:] = [self.run]
        self.summary = None
        self.log.clear()
        self.summary_label.setText("")
        self.progress.setRange(0, setup.max_iterations + 1)
        self.progress.setValue(0)
        self._set_running(True)
        self._worker = start_worker(self.run.run, on_returned=self._finished, on_errored=self._errored,
                                    on_yielded=self._on_progress, owner=self)  # fmt: skip

    def stop(self) -> None:
        """Stop the run before its next acquisition or move (a waiting validation is cancelled)."""
        if self.run is None:
            return
        self.run.stop()
        self.stop_button.setEnabled(False)
        self.status.setText("Stopping: the run ends before its next image or move…")

    def _on_progress(self, p: RunProgress) -> None:
        self.progress.setValue(p.iteration)
        self.status.setText(p.message)
        self.log.appendPlainText(p.message)

    def _on_request(self, request: ValidationRequest) -> None:
        if self.run is None:
            return
        popup = self._ensure_popup()
        popup.show_request(request)
        self.status.setText(f"Waiting for you: validate {request.feature} in the pop-up "
                            f"(iteration {request.iteration}), then Accept, Skip or Stop.")  # fmt: skip
        dock = _dock_of(popup)
        if dock is not None:  # closed or tabbed away by the person: bring it back
            dock.show()
            dock.raise_()

    def _ensure_popup(self) -> ValidationWidget:
        """The pop-up answering this run: the one in use, an open Validate dock, or a new one."""
        assert self.run is not None
        broker = self.run.validator
        assert isinstance(broker, ValidationBroker)
        if self.popup is None or not alive(self.popup) or self.popup not in self.viewer.window.dock_widgets.values():
            docked = [w for w in self.viewer.window.dock_widgets.values() if isinstance(w, ValidationWidget)]
            self.popup = docked[0] if docked else validation_popup(self.viewer, broker, listen=False)
            self.popup.stop_requested.connect(self.stop)
            QTimer.singleShot(0, partial(_give_room, self, self.popup))
        if self.popup.broker is not broker:
            self.popup.use_broker(broker)
        return self.popup

    def _finished(self, summary: RunSummary) -> None:
        self.summary = summary
        lines = summary.lines()
        self.log.appendPlainText(lines[0])
        self.summary_label.setText("<br>".join([f"<b>{lines[0]}</b>", *lines[1:]]))
        self.status.setText(lines[0])
        if summary.state == "finished":
            self.progress.setValue(self.progress.maximum())
        (show_info if summary.state in ("finished", "stopped") else show_warning)(lines[0])
        self._end(lines)

    def _errored(self, error: BaseException) -> None:
        self._fail(f"the run failed: {error}")
        self._end([f"Run failed: {error}"])

    def _fail(self, message: str) -> None:
        self.status.setText(message)
        show_error(message)

    def _end(self, lines: list[str]) -> None:
        if self.popup is not None and alive(self.popup):
            self.popup.finish(lines)
        self.run, self._worker = None, None
        self._current.clear()
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        for w in (self.microscope, self.config_button, self.checkpoint, self.model_button, self.task,
                  self.supervised, self.iterations, self.engine_dir, self.engine_button, self.start_button):  # fmt: skip
            w.setEnabled(not running)
        self.stop_button.setEnabled(running)


def _problem(setup: RunSetup) -> str:
    """Why the run cannot start, in words; empty when it can."""
    if not setup.checkpoint:
        return "Pick a model checkpoint first (Model: Browse…)."
    if not Path(setup.checkpoint).exists():
        return f"{setup.checkpoint}: model file does not exist"
    if setup.microscope != SIMULATOR and not Path(setup.microscope).is_file():
        return f"{setup.microscope}: microscope configuration file does not exist"
    if not setup.engine_dir:
        return "Choose a data-engine folder (where detections are logged)."
    return ""


def _stop_all(runs: list[SupervisedRun], *_: Any) -> None:
    """The dock was closed: a run it started must not wait forever for a pop-up answer."""
    for run in runs:
        run.stop()


def _give_room(run: QWidget, popup: QWidget) -> None:
    """Room for the pop-up, where the person works now: each dock its preferred height."""
    docks = [_dock_of(run), _dock_of(popup)]
    window = docks[1].parentWidget() if docks[1] is not None else None
    if isinstance(window, QMainWindow) and docks[0] is not None:
        window.resizeDocks(docks, [run.sizeHint().height(), popup.sizeHint().height()], Qt.Orientation.Vertical)


def _dock_of(widget: QWidget) -> QDockWidget | None:
    w = widget.parentWidget()
    while w is not None and not isinstance(w, QDockWidget):
        w = w.parentWidget()
    return w


def _row(*widgets: QWidget, as_layout: bool = False) -> Any:
    layout = QHBoxLayout()
    layout.setContentsMargins(0, 0, 0, 0)
    for i, w in enumerate(widgets):
        layout.addWidget(w, 1 if i == 0 else 0)
    if as_layout:
        return layout
    box = QWidget()
    box.setLayout(layout)
    return box
