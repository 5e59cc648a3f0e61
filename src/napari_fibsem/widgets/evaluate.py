"""Evaluate models: compare checkpoints on labelled keypoints, the dock form of ``napari-fibsem evaluate``.

A thin view over :func:`~napari_fibsem.core.evaluation.run.run_evaluation`: the Setup tab builds the
same :class:`EvalConfig` the CLI reads from YAML (prefilled from a dataset folder opened in
napari), Evaluate runs it in a worker thread with a per-image progress bar and a Stop that writes
nothing, and the Results tab shows what the run wrote: ``accuracy.csv`` as a table, the plots,
the report, and any evaluated image with its labelled and detected points as layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_fibsem._layer_meta import opened_folder
from napari_fibsem.core.errors import ConfigError
from napari_fibsem.core.training.progress import StopFlag
from napari_fibsem.widgets._common import ProgressRelay, start_worker
from napari_fibsem.widgets._evaluate_form import EvaluateForm, config_yaml
from napari_fibsem.widgets._evaluate_results import ResultsPanel

if TYPE_CHECKING:
    import napari

    from napari_fibsem.core.evaluation.run import EvalConfig, EvalResult

HELP = ("Add the checkpoints to compare (model files, or folders of masks another tool predicted), "
        "the labelled points CSV and its images, and an output folder; then Evaluate.")  # fmt: skip


DOCK_WIDTH = 520


@dataclass(frozen=True)
class _Outcome:
    result: EvalResult | None = None
    error: str | None = None
    stopped: str | None = None



def evaluate(cfg: EvalConfig, relay: ProgressRelay, stop: StopFlag) -> _Outcome:
    """Worker body: the whole run as the CLI does it, or the message of an error the person can fix."""
    from napari_fibsem.core.evaluation.run import EvaluationStopped, run_evaluation

    try:
        return _Outcome(result=run_evaluation(cfg, on_progress=relay.progressed.emit, should_stop=stop))
    except EvaluationStopped as e:
        return _Outcome(stopped=str(e))
    except (ValueError, ImportError, OSError) as e:  # config, CSV, image, model errors name the file
        return _Outcome(error=str(e))


class EvaluateWidget(QWidget):
    """Dock widget: checkpoints + labelled points -> eval.csv, accuracy.csv, plots and report."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.cfg: EvalConfig | None = None
        self._worker: Any = None
        self._busy = False
        self._stop = StopFlag()
        stop = self._stop
        self.destroyed.connect(lambda *_: stop.set())  # closing napari mid-run ends the run
        self._relay = ProgressRelay()
        self._relay.progressed.connect(self._on_progress)

        self.form = EvaluateForm()
        self.results = ResultsPanel(viewer)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(self.form)
        self.tabs = QTabWidget()
        self.tabs.addTab(scroll, "Setup")
        self.tabs.addTab(self.results, "Results")
        self.run_button = QPushButton("Evaluate")
        self.run_button.clicked.connect(self.run)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("End after the image in progress; no tables, plots or report are written")
        self.stop_button.clicked.connect(self.stop)
        self.yaml_button = QPushButton("Save as YAML…")
        self.yaml_button.setToolTip("These settings as an eval.yaml for `napari-fibsem evaluate --config`")
        self.yaml_button.clicked.connect(self._choose_yaml)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel(HELP)
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, stretch=1)
        buttons = QHBoxLayout()
        for b in (self.run_button, self.stop_button, self.yaml_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        viewer.layers.events.inserted.connect(self._prefill)
        self._prefill()
        self._update_buttons()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        """Wide enough for the accuracy table and the plots to be read without squinting."""
        hint = super().sizeHint()
        return QSize(max(hint.width(), DOCK_WIDTH), hint.height())

    # -- inputs -----------------------------------------------------------------------------------
    def _prefill(self, *_: Any) -> None:
        """Paths from the dataset folder a layer was opened from (the selected layer first)."""
        folder = opened_folder(self.viewer)
        if folder is not None:
            self.form.prefill(folder)

    def _choose_yaml(self) -> None:
        cfg = self._config()
        if cfg is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save evaluation config", str(cfg.save_path.parent / "eval.yaml"), "YAML (*.yaml *.yml)"
        )
        if path:
            self.save_yaml(path, cfg)

    def save_yaml(self, path: str | Path, cfg: EvalConfig | None = None) -> Path | None:
        """Write the settings as an evaluation YAML the CLI runs unchanged."""
        from napari.utils.notifications import show_info

        from napari_fibsem.core.io.atomic import atomic_write_text

        cfg = cfg or self._config()
        if cfg is None:
            return None
        path = Path(path)
        try:
            atomic_write_text(path, config_yaml(cfg))
        except OSError as e:
            self._fail(f"{path}: cannot write ({e.strerror})")
            return None
        self.status.setText(f"saved {path.name}; run it with: napari-fibsem evaluate --config {path}")
        show_info(f"saved the evaluation config to {path}")
        return path

    def _config(self) -> EvalConfig | None:
        try:
            return self.form.config()
        except ConfigError as e:
            self._fail(str(e))
            return None

    # -- running ----------------------------------------------------------------------------------
    def run(self) -> bool:
        """Evaluate in the background; False when the settings have a problem (shown) or a run is on."""
        if self._busy:
            return False
        cfg = self._config()
        if cfg is None:
            return False
        self.cfg = cfg
        self._stop.clear()
        self._busy = True
        self.progress.setRange(0, 0)  # busy until the first image is done
        self.progress.setVisible(True)
        first = cfg.checkpoints[0].name
        self.status.setText(f"evaluating {first!r} (checkpoint 1/{len(cfg.checkpoints)})…" if cfg.run_eval
                            else f"re-plotting {cfg.save_path / 'eval.csv'}…")  # fmt: skip
        self._update_buttons()
        self._worker = start_worker(
            evaluate,
            cfg,
            self._relay,
            self._stop,
            on_returned=self._on_returned,
            on_errored=lambda e: self._on_returned(_Outcome(error=f"{type(e).__name__}: {e}")),
            owner=self,
        )
        return True

    def stop(self) -> None:
        if self._busy:
            self._stop.set()
            self.status.setText("stopping after this image…")

    def _on_progress(self, done: int, total: int) -> None:
        if self.cfg is None or not total:
            return
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.progress.setFormat(f"image {done}/{total}")
        n = len(self.cfg.checkpoints)
        per = max(total // n, 1)
        i = min(max(done - 1, 0) // per, n - 1)
        if self._stop():
            return
        if done >= total:
            self.status.setText("writing eval.csv, accuracy.csv, plots and report…")
        else:
            self.status.setText(
                f"checkpoint {i + 1}/{n} {self.cfg.checkpoints[i].name!r}: {done - i * per}/{per} images"
            )

    def _on_returned(self, outcome: _Outcome) -> None:
        from napari.utils.notifications import show_info

        self._busy, self._worker = False, None
        self.progress.setVisible(False)
        self._update_buttons()
        if outcome.error is not None:
            self._fail(outcome.error)
        elif outcome.stopped is not None:
            self.status.setText(outcome.stopped)
            show_info(f"evaluation {outcome.stopped}")
        elif outcome.result is not None and self.cfg is not None:
            self.results.show_result(self.cfg, outcome.result)
            self.tabs.setCurrentWidget(self.results)
            self.status.setText(self._summary(self.cfg, outcome.result))
            show_info(f"evaluation done: results in {self.cfg.save_path}")

    @staticmethod
    def _summary(cfg: EvalConfig, result: EvalResult) -> str:
        from napari_fibsem.core.evaluation.run import threshold_column

        best = max((r for r in result.accuracy if r["feature"] == "ALL"),
                   key=lambda r: r[threshold_column(min(result.thresholds))], default=None)  # fmt: skip
        names = ", ".join(sorted(p.name for p in result.files.values()))
        head = (
            f"best within {min(result.thresholds):g} px: {best['checkpoint']!r}. "
            if best and len(cfg.checkpoints) > 1
            else ""
        )
        return f"{head}Wrote {names} to {cfg.save_path}"

    def _fail(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status.setText(f"failed: {message}")
        show_error(message)

    def _update_buttons(self) -> None:
        self.run_button.setEnabled(not self._busy)
        self.stop_button.setEnabled(self._busy)
        self.yaml_button.setEnabled(not self._busy)
        self.form.setEnabled(not self._busy)
        self.results.setEnabled(not self._busy)
