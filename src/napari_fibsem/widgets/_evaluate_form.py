"""The Evaluate dock's inputs: checkpoints, labelled points, images, output folder, options.

The form turns what the person filled in into an :class:`EvalConfig`, the model the CLI reads from
``eval.yaml``, so the dock and ``napari-fibsem evaluate`` validate and run identical configs (and
"Save as YAML…" hands the CLI exactly what the dock would run).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_fibsem.core.errors import ConfigError
from napari_fibsem.core.evaluation.run import CheckpointSpec, EvalConfig, parse_eval_config

SOURCE = "Evaluate models"
DEFAULT_THRESHOLDS = "250, 100, 50, 25, 10"
MODEL_FILTER = "Models (*.pt *.pth *.ckpt *.onnx *.safetensors);;All files (*)"


class PathField(QWidget):
    """A path the person types or picks with "…" (a file or a folder)."""

    def __init__(self, title: str, folder: bool, file_filter: str = "", placeholder: str = "") -> None:
        super().__init__()
        self._title, self._folder, self._filter = title, folder, file_filter
        self.line = QLineEdit()
        self.line.setPlaceholderText(placeholder)
        self.browse = QToolButton(text="…")
        self.browse.setToolTip(f"Choose the {title.lower()}")
        self.browse.clicked.connect(self._choose)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.line, stretch=1)
        row.addWidget(self.browse)

    def text(self) -> str:
        return self.line.text().strip()

    def setText(self, text: str | Path) -> None:  # noqa: N802 - Qt's spelling, like QLineEdit's
        self.line.setText(str(text))

    def _choose(self) -> None:
        start = self.text()
        if self._folder:
            path = QFileDialog.getExistingDirectory(self, self._title, start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, self._title, start, self._filter)
        if path:
            self.setText(path)


class CheckpointTable(QTableWidget):
    """Checkpoints to compare: an editable name (used in every table and plot) and the path."""

    def __init__(self) -> None:
        super().__init__(0, 2)
        self.setHorizontalHeaderLabels(["name", "model file or folder of masks"])
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.verticalHeader().setVisible(False)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.ElideLeft)  # the file name is the end of a path
        self.setMinimumHeight(90)
        self.setMaximumHeight(140)

    def add(self, path: str | Path, name: str | None = None) -> str:
        """Append ``path``; a name already taken gets its parent folder's name in front."""
        path = Path(path)
        taken = set(self.names())
        name = name or CheckpointSpec(path=path).name or path.name
        if name in taken:
            name = f"{path.parent.name}-{name}"
        base, n = name, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        row = self.rowCount()
        self.insertRow(row)
        self.setItem(row, 0, QTableWidgetItem(name))
        item = QTableWidgetItem(str(path))
        item.setFlags(item.flags() & ~Qt.ItemIsEditable)
        item.setToolTip(str(path))
        self.setItem(row, 1, item)
        return name

    def remove_selected(self) -> None:
        for row in sorted({i.row() for i in self.selectedIndexes()}, reverse=True):
            self.removeRow(row)

    def names(self) -> list[str]:
        return [self.item(r, 0).text().strip() for r in range(self.rowCount())]

    def entries(self) -> list[dict[str, str]]:
        return [{"path": self.item(r, 1).text(), "name": self.item(r, 0).text().strip()}
                for r in range(self.rowCount())]  # fmt: skip


class EvaluateForm(QWidget):
    """Every input of an evaluation run; :meth:`config` validates them as the CLI does."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.checkpoints = CheckpointTable()
        self.checkpoints.setToolTip("Double-click a name to rename it; names must differ")
        self.add_model_button = QPushButton("Add model…")
        self.add_model_button.setToolTip("A checkpoint bundle, OpenFIBSEM checkpoint or ONNX file")
        self.add_model_button.clicked.connect(self._choose_model)
        self.add_folder_button = QPushButton("Add folder…")
        self.add_folder_button.setToolTip(
            "A folder of predicted label TIFFs named like the images, or an nnU-Net results folder"
        )
        self.add_folder_button.clicked.connect(self._choose_folder)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.checkpoints.remove_selected)
        self.csv_path = PathField(
            "Labelled points CSV",
            False,
            "Keypoints CSV (*.csv);;All files (*)",
            "keypoints.csv with the true points",
        )
        self.images_path = PathField("Images folder", True, placeholder="the images the CSV names")
        self.save_path = PathField("Output folder", True, placeholder="eval.csv, accuracy.csv, plots, report")
        self.thresholds = QLineEdit(DEFAULT_THRESHOLDS)
        self.thresholds.setToolTip(
            "Pixel distances: accuracy is the share of labelled points detected within each"
        )
        self.features = QListWidget()
        self.features.setMaximumHeight(150)
        self.features.setToolTip("Features of the CSV to evaluate (untick to leave one out)")
        self.min_size = QSpinBox(minimum=0, maximum=10_000_000, singleStep=50)
        self.min_size.setSpecialValueText("auto")
        self.min_size.setToolTip("Ignore objects smaller than this (px); auto: 1e-4 of the image")
        self.nearest = QCheckBox("Nearest object to the image centre")
        self.nearest.setChecked(True)
        self.nearest.setToolTip("Off: the largest object of the class")
        self.device = QComboBox(editable=True)
        self.device.addItems(["auto", "cpu", "cuda"])
        self.device.setToolTip("Where models run (cuda:1 ... may be typed); auto: CUDA when available")
        self.det_plots = QCheckBox("Save detection pictures (det_plots/)")
        self.det_plots.setToolTip("One picture per image and checkpoint: detections, labelled points, mask")
        self.replot = QCheckBox("Re-plot only (no models)")
        self.replot.setToolTip(
            "Read the eval.csv already in the output folder (new thresholds), run no model"
        )
        self.csv_path.line.textChanged.connect(self._refresh_features)

        buttons = QHBoxLayout()
        for b in (self.add_model_button, self.add_folder_button, self.remove_button):
            buttons.addWidget(b)
        form = QFormLayout()
        form.addRow("Labelled points", self.csv_path)
        form.addRow("Images", self.images_path)
        form.addRow("Output folder", self.save_path)
        form.addRow("Thresholds (px)", self.thresholds)
        form.addRow("Features", self.features)
        form.addRow("Min object size", self.min_size)
        form.addRow("Device", self.device)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.checkpoints)
        layout.addLayout(buttons)
        layout.addLayout(form)
        layout.addWidget(self.nearest)
        layout.addWidget(self.det_plots)
        layout.addWidget(self.replot)
        layout.addStretch(1)

    # -- filling in -------------------------------------------------------------------------------
    def _choose_model(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Model checkpoints", "", MODEL_FILTER)
        for p in paths:
            self.checkpoints.add(p)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of predicted masks (or nnU-Net results)")
        if folder:
            self.checkpoints.add(folder)

    def prefill(self, folder: Path) -> None:
        """Fill the empty path fields from a dataset folder opened in napari."""
        if not self.images_path.text():
            self.images_path.setText(folder)
        if not self.csv_path.text() and (folder / "keypoints.csv").is_file():
            self.csv_path.setText(folder / "keypoints.csv")
        if not self.save_path.text():
            self.save_path.setText(folder / "evaluation")

    def _refresh_features(self, text: str) -> None:
        """List the CSV's features, all ticked (an unreadable CSV lists none: its error comes on Evaluate)."""
        from napari_fibsem.core.io.keypoints import read_keypoints

        ticked = {i.text(): i.checkState() for i in self._feature_items()}
        self.features.clear()
        path = Path(text.strip())
        if not text.strip() or not path.is_file():
            return
        try:
            names = sorted({p.feature for p in read_keypoints(path)})
        except (OSError, ValueError):
            return
        for name in names:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(ticked.get(name, Qt.Checked))
            self.features.addItem(item)

    def _feature_items(self) -> list[QListWidgetItem]:
        return [self.features.item(i) for i in range(self.features.count())]

    # -- reading out ------------------------------------------------------------------------------
    def data(self) -> dict[str, Any]:
        """The evaluation config as the keys of ``eval.yaml``; raises ConfigError for empty fields."""
        problems = []
        fields = {"data_path": self.csv_path, "images_path": self.images_path, "save_path": self.save_path}
        for key, field in fields.items():
            if not field.text():
                problems.append(f"{key}: empty; choose the {field._title.lower()}")
        if not self.checkpoints.rowCount():
            problems.append("checkpoints: none; add a model or a folder of predicted masks")
        items = self._feature_items()
        chosen = [i.text() for i in items if i.checkState() == Qt.Checked]
        if items and not chosen:
            problems.append("features: none ticked; tick at least one")
        if problems:
            raise ConfigError(SOURCE, problems, "evaluation config")
        data: dict[str, Any] = {key: str(Path(f.text()).expanduser()) for key, f in fields.items()}
        data["checkpoints"] = self.checkpoints.entries()
        data["thresholds"] = [t for t in re.split(r"[,;\s]+", self.thresholds.text()) if t]
        data["features"] = chosen if len(chosen) < len(items) else None
        data["min_size"] = self.min_size.value() or None
        data["filter"] = self.nearest.isChecked()
        device = self.device.currentText().strip()
        data["device"] = None if device in ("", "auto") else device
        data["save_det_plot"] = self.det_plots.isChecked()
        data["run_eval"] = not self.replot.isChecked()
        return data

    def config(self) -> EvalConfig:
        """Validated exactly as ``napari-fibsem evaluate`` validates a YAML file (all problems at once)."""
        return parse_eval_config(self.data(), source=SOURCE)


def config_yaml(cfg: EvalConfig) -> str:
    """``cfg`` as an ``eval.yaml`` the CLI runs unchanged (only what differs from the defaults)."""
    import yaml

    data = cfg.model_dump(mode="json", exclude_defaults=True)
    data["checkpoints"] = [{k: v for k, v in c.items() if v is not None} for c in data["checkpoints"]]
    return yaml.safe_dump(data, sort_keys=False)
