"""The Evaluate dock's results: the accuracy table, the saved plots, the report, one image's points.

Everything shown is read from what the run wrote (``accuracy.csv``'s rows, the PNGs in the output
folder), so the dock never shows numbers or pictures that differ from the CLI's files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QUrl
from qtpy.QtGui import QDesktopServices, QFont, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_fibsem.core.evaluation.run import EvalConfig, EvalResult, find_image, threshold_column

if TYPE_CHECKING:
    import napari

PLOTS = (("accuracy_plot", "Accuracy"), ("scatter", "Distances"), ("histogram", "Histogram"))
FIXED_COLUMNS = (("checkpoint", "checkpoint"), ("feature", "feature"), ("n", "points"), ("found", "found"),
                 ("miss_rate", "miss rate"), ("mean_px", "mean px"), ("median_px", "median px"))  # fmt: skip
TRUTH_COLOUR = "#00e676"


def accuracy_columns(thresholds: list[float]) -> list[tuple[str, str]]:
    """(accuracy.csv column, header shown) for every column of the table."""
    return [*FIXED_COLUMNS, *((threshold_column(t), f"≤{t:g} px") for t in thresholds)]


def cell_text(column: str, value: Any) -> str:
    """How a table cell reads: shares as percentages, distances to 0.1 px, a dash for no value."""
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if column == "miss_rate" or column.startswith("acc_"):
        return f"{100 * float(value):.1f}%"
    if column in ("mean_px", "median_px"):
        return f"{float(value):.1f}"
    return str(value)


class Picture(QLabel):
    """A saved PNG scaled to the space it has; double-click opens it full size."""

    def __init__(self, hint: str) -> None:
        super().__init__(hint)
        self.path: Path | None = None
        self._pixmap = QPixmap()
        self._hint = hint
        self.setAlignment(Qt.AlignCenter)
        self.setWordWrap(True)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Ignored)
        self.setMinimumSize(120, 180)

    def set_path(self, path: Path | None) -> None:
        self.path = path
        self._pixmap = QPixmap(str(path)) if path is not None else QPixmap()
        self.setToolTip(f"{path}\ndouble-click: open full size" if path is not None else "")
        if self._pixmap.isNull():
            self.clear()
            self.setText(self._hint)
        self._fit()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._fit()

    def mouseDoubleClickEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        if self.path is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.path)))

    def _fit(self) -> None:
        if not self._pixmap.isNull():
            self.setPixmap(self._pixmap.scaled(self.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation))


class ResultsPanel(QWidget):
    """Table and plots of the last run, buttons to open its report and folder, one image in the viewer."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.cfg: EvalConfig | None = None
        self.result: EvalResult | None = None
        self._shown_layers: list[Any] = []
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.table.setToolTip("accuracy.csv: per checkpoint and feature (ALL: every feature); "
                              "≤ t px is the share of labelled points detected within t pixels")  # fmt: skip
        self.pictures = {
            key: Picture(f"the {title.lower()} plot appears after a run") for key, title in PLOTS
        }
        self.tabs = QTabWidget()
        self.tabs.addTab(self.table, "Table")
        for key, title in PLOTS:
            self.tabs.addTab(self.pictures[key], title)
        self.report_button = QPushButton("Open report")
        self.report_button.setToolTip("report.html in the web browser")
        self.report_button.clicked.connect(self.open_report)
        self.folder_button = QPushButton("Open folder")
        self.folder_button.clicked.connect(self.open_folder)
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("An evaluated image")
        self.show_button = QPushButton("Show in viewer")
        self.show_button.setToolTip(
            "The image with its labelled points (green circles) and each checkpoint's detections (crosses)"
        )
        self.show_button.clicked.connect(self.show_image)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs, stretch=1)
        row = QHBoxLayout()
        row.addWidget(self.report_button)
        row.addWidget(self.folder_button)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Image"))
        row.addWidget(self.image_combo, stretch=1)
        row.addWidget(self.show_button)
        layout.addLayout(row)
        self.show_result(None, None)

    def show_result(self, cfg: EvalConfig | None, result: EvalResult | None) -> None:
        """Fill the table, plots and image list from a finished run (None: empty)."""
        self.cfg, self.result = cfg, result
        columns = accuracy_columns(result.thresholds) if result is not None else list(FIXED_COLUMNS)
        rows = result.accuracy if result is not None else []
        self.table.clear()
        self.table.setColumnCount(len(columns))
        self.table.setRowCount(len(rows))
        for j, (key, title) in enumerate(columns):
            head = QTableWidgetItem(title)
            head.setToolTip(f"accuracy.csv column {key}")
            self.table.setHorizontalHeaderItem(j, head)
        bold = QFont()
        bold.setBold(True)
        for i, row in enumerate(rows):
            for j, (key, _title) in enumerate(columns):
                item = QTableWidgetItem(cell_text(key, row[key]))
                item.setData(Qt.UserRole, row[key])
                if j >= 2:
                    item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                if row["feature"] == "ALL":
                    item.setFont(bold)
                self.table.setItem(i, j, item)
        self.table.resizeColumnsToContents()
        files = result.files if result is not None else {}
        for key, picture in self.pictures.items():
            picture.set_path(files.get(key))
        names = list(dict.fromkeys(str(r["filename"]) for r in (result.rows if result is not None else [])))
        self.image_combo.clear()
        self.image_combo.addItems(names)
        self.report_button.setEnabled("report_html" in files)
        self.folder_button.setEnabled(cfg is not None)
        self.show_button.setEnabled(bool(names))

    def open_report(self) -> None:
        if self.result is not None and "report_html" in self.result.files:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.result.files["report_html"])))

    def open_folder(self) -> None:
        if self.cfg is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.cfg.save_path)))

    def show_image(self) -> list[Any]:
        """The chosen image, its labelled points and every checkpoint's detections as layers."""
        from napari.utils.notifications import show_warning

        from napari_fibsem.core.io.imageio import ImageIOError, read_image

        name = self.image_combo.currentText()
        if self.cfg is None or self.result is None or not name:
            return []
        path = find_image(self.cfg.images_path, name)
        try:
            if path is None:
                raise FileNotFoundError(f"{name} is not in {self.cfg.images_path}")
            image = read_image(path)
        except (OSError, ImageIOError) as e:
            show_warning(f"cannot show {name}: {e}")
            return []
        for layer in self._shown_layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        rows = [r for r in self.result.rows if str(r["filename"]) == name]
        self._shown_layers = [self.viewer.add_image(image.data, name=f"evaluated: {name}")]
        self._shown_layers += point_layers(self.viewer, rows, name, min(image.data.shape[:2]))
        self.viewer.reset_view()
        return self._shown_layers


def point_layers(
    viewer: napari.viewer.Viewer, rows: list[dict[str, Any]], name: str, extent: int
) -> list[Any]:
    """Labelled points (green circles, named) and each checkpoint's found points (crosses, plot colours)."""
    from matplotlib.colors import to_hex

    size = max(6.0, extent / 30)
    checkpoints = list(dict.fromkeys(str(r["checkpoint"]) for r in rows))
    truth = {str(r["feature"]): (float(r["gt_y"]), float(r["gt_x"])) for r in rows}
    layers = [viewer.add_points(
        _yx(list(truth.values())), name=f"labelled: {name}", features={"feature": list(truth)}, size=size,
        symbol="ring", face_color=TRUTH_COLOUR, border_width=0, text={"string": "{feature}", "color": TRUTH_COLOUR,
        "size": 9, "anchor": "upper_left"},
    )]  # fmt: skip
    for i, ckpt in enumerate(checkpoints):
        found = [r for r in rows if str(r["checkpoint"]) == ckpt and str(r["found"]).lower() == "true"]
        layers.append(viewer.add_points(
            _yx([(float(r["det_y"]), float(r["det_x"])) for r in found]), name=f"detected ({ckpt}): {name}",
            features={"feature": [str(r["feature"]) for r in found]}, size=size, symbol="cross",
            face_color=to_hex(f"C{i % 10}"), border_width=0,
        ))  # fmt: skip
    return layers


def _yx(points: list[tuple[float, float]]) -> np.ndarray:
    return np.asarray(points, dtype=float).reshape(-1, 2)
