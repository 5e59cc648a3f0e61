"""SAM / MobileSAM-assisted labelling inside the labelling widget: prompts -> preview -> commit.

Clicks in the ``sam prompts`` Points layer (positive, or negative with the box ticked) and a
rectangle in the ``sam box`` Shapes layer become a mask preview in the current class colour;
Commit writes it into the labels (only unlabelled pixels, or painting over), Undo commit puts the
labels back. The image embedding is computed off the UI thread and cached by
:class:`~napari_fibsem.core.sam.SamService`; the neighbours of the shown image are prefetched.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from napari_fibsem._colormap import labels_colormap
from napari_fibsem.widgets._common import start_worker

if TYPE_CHECKING:
    from napari_fibsem.widgets.labelling import LabellingWidget

PROMPTS, BOX, PREVIEW = "sam prompts", "sam box", "sam preview"


class SamAssist(QGroupBox):
    """The SAM group of the labelling widget; owns one ``SamService``."""

    def __init__(self, owner: LabellingWidget) -> None:
        super().__init__("SAM-assisted")
        self.owner = owner
        self.service: Any = None
        self.embedding: Any = None
        self.preview: np.ndarray | None = None
        self.undo_stack: list[np.ndarray] = []
        self._worker: Any = None
        self._embedding_for = -1

        self.model_type = QComboBox()
        self.model_type.addItems(["auto", "vit_t", "vit_b", "vit_l", "vit_h"])
        self.load_button = QPushButton("SAM checkpoint…")
        self.load_button.clicked.connect(self._choose)
        self.negative = QCheckBox("negative points")
        self.negative.toggled.connect(self._on_negative)
        self.paint_over = QCheckBox("paint over labels")
        self.commit_button = QPushButton("Commit")
        self.commit_button.clicked.connect(self.commit)
        self.undo_button = QPushButton("Undo commit")
        self.undo_button.clicked.connect(self.undo)
        self.clear_button = QPushButton("Clear prompts")
        self.clear_button.clicked.connect(self.clear_prompts)
        self.status = QLabel("no SAM model (vit_t = MobileSAM; checkpoints are files you provide)")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.load_button)
        row.addWidget(self.model_type)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.negative)
        row.addWidget(self.paint_over)
        layout.addLayout(row)
        row = QHBoxLayout()
        for b in (self.commit_button, self.undo_button, self.clear_button):
            row.addWidget(b)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self._update_buttons()

    # -- model ----------------------------------------------------------------------------------
    def _choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAM / MobileSAM checkpoint (.pth / .pt)")
        if path:
            self.load(path)

    def load(self, checkpoint: str | Path) -> None:
        """Load a checkpoint in the background; errors (missing file, wrong weights) show here."""
        kind = None if self.model_type.currentText() == "auto" else self.model_type.currentText()
        self.status.setText(f"loading {Path(checkpoint).name}…")

        def work():
            from napari_fibsem.widgets._llvm_guard import preload_triton

            preload_triton()
            from napari_fibsem.core.sam import SamService, load_sam

            try:
                return SamService(load_sam(checkpoint, kind)), ""
            except (OSError, ValueError, ImportError) as e:
                return None, str(e)

        def done(result) -> None:
            service, error = result
            if error:
                self.status.setText(f"SAM not loaded: {error}")
            else:
                self.set_service(service)

        self._start(work, done)

    def set_service(self, service: Any) -> None:
        if self.service is not None and self.service is not service:
            self.service.close()
        self.service, self.embedding, self._embedding_for = service, None, -1
        self.status.setText(f"SAM ready ({service.model.model_type})")
        self.on_image_changed()

    # -- per image --------------------------------------------------------------------------------
    def on_image_changed(self) -> None:
        """New image: drop prompts and preview, embed it in the background, prefetch neighbours."""
        self.clear_prompts()
        self.undo_stack.clear()
        self.embedding = None
        w = self.owner
        if self.service is None or w.image is None or w.folder is None:
            self._update_buttons()
            return
        index, data, service = w.index, w.image.data, self.service
        neighbours = [w.folder.images[j] for j in (index + 1, index - 1) if 0 <= j < len(w.folder)]
        self.status.setText("computing the image embedding…")

        def work():  # reading the neighbours is file I/O: it stays in the worker too
            try:
                return service.embed(data), ""
            finally:
                _prefetch(service, neighbours)

        def done(result) -> None:
            emb, error = result
            if emb is None:
                self.status.setText(f"embedding failed: {error}")
            elif index == self.owner.index:
                self.embedding, self._embedding_for = emb, index
                self.status.setText("click in 'sam prompts' (positive/negative) or draw a box in 'sam box'")
                self._ensure_layers()
                self.update_preview()

        self._start(work, done)

    def _ensure_layers(self) -> None:
        layers = self.owner.viewer.layers
        if PROMPTS not in layers:
            pts = self.owner.viewer.add_points(
                np.empty((0, 2)), name=PROMPTS, features={"positive": np.array([], dtype=bool)},
                feature_defaults={"positive": not self.negative.isChecked()}, face_color="positive",
                face_color_cycle={True: "#00ff00", False: "#ff0000"}, size=8,
            )  # fmt: skip
            pts.events.data.connect(lambda e: self.update_preview())
            pts.mode = "add"
        if BOX not in layers:
            box = self.owner.viewer.add_shapes(name=BOX, edge_color="#ffff00", face_color="transparent", edge_width=2)
            box.events.data.connect(lambda e: self.update_preview())

    def _on_negative(self, on: bool) -> None:
        if PROMPTS in self.owner.viewer.layers:
            self.owner.viewer.layers[PROMPTS].feature_defaults = {"positive": not on}

    def prompts(self) -> tuple[list[tuple[float, float]], list[int], tuple[float, float, float, float] | None]:
        layers = self.owner.viewer.layers
        points, labels, box = [], [], None
        if PROMPTS in layers and len(layers[PROMPTS].data):
            layer = layers[PROMPTS]
            points = [(float(x), float(y)) for y, x in layer.data]
            labels = [int(bool(p)) for p in layer.features["positive"]]
        if BOX in layers and len(layers[BOX].data):
            corners = np.asarray(layers[BOX].data[-1])[:, -2:]
            (y0, x0), (y1, x1) = corners.min(axis=0), corners.max(axis=0)
            box = (float(x0), float(y0), float(x1), float(y1))
        return points, labels, box

    def update_preview(self) -> None:
        """Re-run the prompt decoder (tens of ms) and show the mask in the current class colour."""
        if self.service is None or self.embedding is None or self._embedding_for != self.owner.index:
            return
        points, labels, box = self.prompts()
        layers = self.owner.viewer.layers
        if not points and box is None:
            self.preview = None
            if PREVIEW in layers:
                layers[PREVIEW].data = np.zeros_like(layers[PREVIEW].data)
            self._update_buttons()
            return
        try:
            result = self.service.predict(self.embedding, points or None, labels or None, box, multimask=len(points) == 1 and box is None)
        except ValueError as e:
            self.status.setText(f"prompt ignored: {e}")
            return
        self.preview = result.mask
        cls = self._class_id()
        shown = (result.mask * cls).astype(np.uint8)
        if PREVIEW in layers:
            layers[PREVIEW].data = shown
        else:
            layer = self.owner.viewer.add_labels(shown, name=PREVIEW, opacity=0.6)
            layer.colormap = labels_colormap(self.owner.folder.class_map)
            layer.editable = False
            layers.move(layers.index(PREVIEW), layers.index(PROMPTS))  # below the prompts
            layers.selection.active = layers[PROMPTS]  # the next click is another prompt
        self.status.setText(f"preview: {int(result.mask.sum())} px (score {result.score:.2f}); Commit writes it")
        self._update_buttons()

    def _class_id(self) -> int:
        from napari_fibsem.widgets.labelling import LABELS_LAYER

        return int(self.owner.viewer.layers[LABELS_LAYER].selected_label)

    # -- commit / undo ----------------------------------------------------------------------------
    def commit(self) -> bool:
        """Write the preview with the current class into the labels; the previous labels go on the undo stack."""
        from napari_fibsem.widgets.labelling import LABELS_LAYER

        if self.preview is None:
            return False
        layer = self.owner.viewer.layers[LABELS_LAYER]
        before = np.array(layer.data, copy=True)
        target = self.preview if self.paint_over.isChecked() else (self.preview & (before == 0))
        after = before.copy()
        after[target] = self._class_id()
        self.undo_stack.append(before)
        layer.data = after
        self.clear_prompts()
        self.status.setText(f"committed {int(target.sum())} px as class {self._class_id()}")
        return True

    def undo(self) -> bool:
        from napari_fibsem.widgets.labelling import LABELS_LAYER

        if not self.undo_stack:
            return False
        self.owner.viewer.layers[LABELS_LAYER].data = self.undo_stack.pop()
        self.status.setText("last commit undone")
        self._update_buttons()
        return True

    def clear_prompts(self) -> None:
        layers = self.owner.viewer.layers
        if PROMPTS in layers:
            layers[PROMPTS].data = np.empty((0, 2))
        if BOX in layers:
            layers[BOX].data = []
        self.preview = None
        if PREVIEW in layers:
            layers[PREVIEW].data = np.zeros_like(layers[PREVIEW].data)
        self._update_buttons()

    # -- plumbing ---------------------------------------------------------------------------------
    def _start(self, work, done) -> None:
        worker = None

        def finish(result) -> None:
            if self._worker is worker:  # a newer job may have started meanwhile: leave it
                self._worker = None
            done(result)
            self._update_buttons()

        worker = start_worker(work, on_returned=finish, on_errored=lambda e: finish((None, f"{type(e).__name__}: {e}")), owner=self)
        self._worker = worker
        self._update_buttons()

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def _update_buttons(self) -> None:
        self.commit_button.setEnabled(self.preview is not None)
        self.undo_button.setEnabled(bool(self.undo_stack))
        self.clear_button.setEnabled(self.service is not None)


def _prefetch(service: Any, paths: list[Path]) -> None:
    """Queue the embeddings of ``paths`` (unreadable images are simply not prefetched)."""
    from napari_fibsem.core.imageio import read_image

    images = []
    for path in paths:
        try:
            images.append(read_image(path, convert="mean").data)
        except (OSError, ValueError):
            continue
    service.prefetch(images, replace=True)
