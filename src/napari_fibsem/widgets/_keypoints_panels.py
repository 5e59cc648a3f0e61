"""Parts of the keypoint dock: the per-image feature checklist, the pixel-size field, worker bodies.

Both panels are plain views: the dock tells them what to show and listens to their signals, so
all state stays in :class:`~napari_fibsem.core.data.keypoint_labels.KeypointLabels`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from qtpy.QtCore import QLocale, Qt, Signal
from qtpy.QtGui import QDoubleValidator, QValidator
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_fibsem.core.detection import CATALOGUE, detect_features
from napari_fibsem.core.io.imageio import FibsemImage, read_image
from napari_fibsem.widgets._common import swatch

NM = 1e-9
PLACED, MISSING = "✓", "○"

CHECKLIST_TIP = (
    "Features on this image: ✓ placed, ○ still missing. Click one to place it next.\n"
    "The list holds the features used anywhere in this folder's keypoints.csv plus the one picked "
    "above: what you label on one image becomes the to-do list of every other image, and a feature "
    "picked by mistake leaves the list once you pick another without placing it."
)


def order_features(names: Iterable[str]) -> list[str]:
    """Catalogue order (the order a workflow asks for them), features outside the catalogue last."""
    names = set(names)
    return [f for f in CATALOGUE if f in names] + sorted(names - set(CATALOGUE))


class FeatureChecklist(QListWidget):
    """One row per feature being labelled: placed or missing on the current image."""

    picked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setToolTip(CHECKLIST_TIP)
        self.itemClicked.connect(lambda item: self.picked.emit(item.data(Qt.ItemDataRole.UserRole)))

    def show_features(self, features: Sequence[str], placed: Iterable[str], current: str) -> None:
        placed = set(placed)
        self.blockSignals(True)
        self.clear()
        for name in features:
            spec = CATALOGUE.get(name)
            text = f"{PLACED} {name}" if name in placed else f"{MISSING} {name} — missing"
            item = QListWidgetItem(swatch(spec.color) if spec else swatch("#808080"), text)
            item.setData(Qt.ItemDataRole.UserRole, name)
            self.addItem(item)
            if name == current:
                self.setCurrentItem(item)
        self.blockSignals(False)
        self.setFixedHeight(min(8, max(2, self.count())) * (self.sizeHintForRow(0) or 18) + 6)

    def state(self) -> dict[str, bool]:
        """Feature -> placed, as shown (tests and screenshots read this)."""
        return {
            self.item(i).data(Qt.ItemDataRole.UserRole): self.item(i).text().startswith(PLACED)
            for i in range(self.count())
        }


class _OptionalNumber(QDoubleValidator):
    """A number, or nothing (an empty field means "unknown", and Enter must be able to say so)."""

    def validate(self, text: str, pos: int):  # noqa: D102 (Qt API)
        if not text.strip():
            return QValidator.State.Acceptable, text, pos
        return super().validate(text, pos)


class PixelSizeField(QWidget):
    """Pixel size of the current image in nm/px; empty means unknown. Emits metres (or None)."""

    changed = Signal(object)
    apply_to_all = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._shown: float | None = None
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("unknown")
        validator = _OptionalNumber(0.0, 1e6, 6, self.edit)
        validator.setLocale(QLocale.c())  # "7.5" whatever the system's decimal separator
        validator.setNotation(QDoubleValidator.Notation.StandardNotation)
        self.edit.setValidator(validator)
        self.edit.setToolTip(
            "Pixel size of this image in nanometres per pixel, written to the pixel_size column (in metres) "
            "of its rows in keypoints.csv; evaluation uses it to report distances in metres. Prefilled from "
            "the image's metadata; type one (Enter) for images without it; clear it to go back to the metadata."
        )
        self.edit.editingFinished.connect(self._edited)
        self.source = QLabel("")
        self.all_button = QPushButton("Use for all without metadata")
        self.all_button.setToolTip("Give this pixel size to every image of the folder whose file has none")
        self.all_button.clicked.connect(self._apply_all)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Pixel size"))
        row.addWidget(self.edit, stretch=1)
        row.addWidget(QLabel("nm/px"))
        row.addWidget(self.source, stretch=1)
        layout.addLayout(row)
        layout.addWidget(self.all_button)

    def show_value(self, metres: float | None, source: str) -> None:
        """Show ``metres`` (None: unknown) and where it came from, without emitting."""
        self._shown = metres
        self.edit.setText("" if metres is None else f"{metres / NM:.6g}")
        self.source.setText(source)
        self.all_button.setEnabled(metres is not None)

    def value_shown(self) -> float | None:
        """The pixel size (metres) the field shows for the current image."""
        return self._shown

    def value(self) -> float | None:
        """The typed pixel size in metres; None when empty. Raises ValueError for zero or nonsense."""
        text = self.edit.text().strip().replace(",", ".")
        if not text:
            return None
        nm = float(text)
        if not nm > 0:
            raise ValueError(f"pixel size must be above 0 nm/px, got {text}")
        return nm * NM

    def _edited(self) -> None:
        try:
            metres = self.value()
        except ValueError:
            self.show_value(self._shown, self.source.text())
            return
        if metres != self._shown:  # editingFinished also fires when the field just loses focus
            self.changed.emit(metres)

    def _apply_all(self) -> None:
        if self._shown is not None:
            self.apply_to_all.emit(self._shown)


def metadata_pixel_sizes(paths: Sequence[Path]) -> dict[str, float | None]:
    """Worker body: image name -> the pixel size its file's metadata gives (None: none); unreadable files left out."""
    out: dict[str, float | None] = {}
    for path in paths:
        try:
            out[path.name] = read_image(path, convert="mean").metadata.pixel_size
        except (OSError, ValueError):
            continue
    return out


def detect_with_model(checkpoint: str | Path, image: FibsemImage, pixel_size: float | None) -> tuple[Any, str]:
    """Worker body: ``(detected features, "")`` or ``(None, error message)`` for errors a user can fix."""
    from napari_fibsem.core.models import load_model

    try:
        model = load_model(checkpoint)
        return detect_features(image, model, pixel_size=pixel_size or 1.0), ""
    except (OSError, ValueError, ImportError) as e:
        return None, str(e)
