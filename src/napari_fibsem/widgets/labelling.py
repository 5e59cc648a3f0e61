"""Label segmentation masks image by image, by hand or starting from a model's proposal.

A thin view over :class:`~napari_fibsem.core.label_folder.LabelFolder`. One image at a time in an
Image layer, its labels in a Labels layer coloured by the folder's class map: napari's brush,
fill, eraser and undo do the editing; keys 1-9 pick a class (napari's mode keys E, P, F, L, Z still
work). Moving to another image saves the labels if they changed (atomically, as uint8 class ids in
``labels/``). A model's proposal appears in its own layer and is written into the labels only when
accepted; proposals for all unlabelled images go to ``proposals/``, never over saved labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_fibsem._colormap import labels_colormap
from napari_fibsem._reader import META_KEY
from napari_fibsem.core.imageio import FibsemImage
from napari_fibsem.core.label_folder import LabelFolder, MergeMode, merge
from napari_fibsem.widgets._common import start_worker, swatch

if TYPE_CHECKING:
    import napari

IMAGE_LAYER = "labelling image"
LABELS_LAYER = "labels"
PROPOSAL_LAYER = "proposal"


class LabellingWidget(QWidget):
    """Folder -> image list, class palette, navigation with autosave, model proposals."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.folder: LabelFolder | None = None
        self.index = -1
        self.image: FibsemImage | None = None
        self.proposal: np.ndarray | None = None
        self.checkpoint: Path | None = None
        self._model: Any = None
        self._model_path: Path | None = None
        self._worker: Any = None

        self.open_button = QPushButton("Open image folder…")
        self.open_button.clicked.connect(self._choose_folder)
        self.from_layer_button = QPushButton("Use the opened folder")
        self.from_layer_button.setToolTip("The folder a selected layer was read from (drag a folder into napari)")
        self.from_layer_button.clicked.connect(self.open_from_layer)
        self.folder_label = QLabel("no folder open")
        self.folder_label.setWordWrap(True)
        self.image_list = QListWidget()
        self.image_list.currentRowChanged.connect(self._on_row)
        self.palette = QListWidget()
        self.palette.currentRowChanged.connect(self._on_palette)
        self.prev_button, self.next_button = QPushButton("◀ Previous"), QPushButton("Next ▶")
        self.prev_button.clicked.connect(self.previous_image)
        self.next_button.clicked.connect(self.next_image)
        self.save_button = QPushButton("Save")
        self.save_button.clicked.connect(self.save)

        self.model_button = QPushButton("Checkpoint…")
        self.model_button.clicked.connect(self._choose_model)
        self.model_label = QLabel("no model")
        self.prelabel_button = QPushButton("Propose for this image")
        self.prelabel_button.clicked.connect(self.propose_current)
        self.prelabel_all_button = QPushButton("Propose for all unlabelled")
        self.prelabel_all_button.clicked.connect(self.propose_all)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.accept_fill_button = QPushButton("Accept (unlabelled pixels)")
        self.accept_fill_button.clicked.connect(lambda: self.accept_proposal("fill"))
        self.accept_replace_button = QPushButton("Accept (replace)…")
        self.accept_replace_button.clicked.connect(lambda: self.accept_proposal("replace", ask=True))
        self.discard_button = QPushButton("Discard")
        self.discard_button.clicked.connect(self.discard_proposal)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("Open a folder of images; labels go to its labels/ folder.")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(self.open_button)
        top.addWidget(self.from_layer_button)
        layout.addLayout(top)
        layout.addWidget(self.folder_label)
        layout.addWidget(self.image_list, stretch=2)
        layout.addWidget(QLabel("Classes (keys 1-9)"))
        layout.addWidget(self.palette, stretch=1)
        nav = QHBoxLayout()
        for b in (self.prev_button, self.next_button, self.save_button):
            nav.addWidget(b)
        layout.addLayout(nav)
        box = QGroupBox("Model-assisted")
        grid = QVBoxLayout(box)
        row = QHBoxLayout()
        row.addWidget(self.model_button)
        row.addWidget(self.model_label, stretch=1)
        grid.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.prelabel_button)
        row.addWidget(self.prelabel_all_button)
        row.addWidget(self.stop_button)
        grid.addLayout(row)
        row = QHBoxLayout()
        for b in (self.accept_fill_button, self.accept_replace_button, self.discard_button):
            row.addWidget(b)
        grid.addLayout(row)
        grid.addWidget(self.progress)
        layout.addWidget(box)
        from napari_fibsem.widgets._sam_assist import SamAssist

        self.sam = SamAssist(self)
        layout.addWidget(self.sam)
        layout.addWidget(self.status)
        self._update_buttons()
        for key, step in (("PageDown", self.next_image), ("PageUp", self.previous_image)):
            viewer.bind_key(key, lambda _v, f=step: f(), overwrite=True)

    # -- opening and navigating -----------------------------------------------------------------
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images to label")
        if folder:
            self.open_folder(folder)

    def open_from_layer(self) -> None:
        """Open the folder that the selected (or any) layer was read from by our reader."""
        layers = [self.viewer.layers.selection.active, *self.viewer.layers]
        for layer in layers:
            folder = (getattr(layer, "metadata", {}) or {}).get(META_KEY, {}).get("folder")
            if folder:
                self.open_folder(folder)
                return
        self.status.setText("no layer here was opened from a folder; drag a folder into napari first")

    def open_folder(self, folder: str | Path) -> None:
        self.save()
        try:
            self.folder = LabelFolder(folder)
        except (OSError, ValueError) as e:
            self.status.setText(f"cannot open {folder}: {e}")
            return
        self.folder_label.setText(str(self.folder.folder))
        self.palette.blockSignals(True)
        self.palette.clear()
        for cid, info in self.folder.class_map.classes.items():
            key = f"{cid}  " if 1 <= cid <= 9 else "   "
            self.palette.addItem(QListWidgetItem(swatch(info.color), f"{key}{info.name}"))
        self.palette.blockSignals(False)
        self.index = -1
        self._refresh_list()
        self.show_image(0)

    def show_image(self, index: int) -> None:
        """Save the current labels if they changed, then show image ``index``."""
        if self.folder is None or not 0 <= index < len(self.folder):
            return
        self.save()
        try:
            image, labels = self.folder.load(index)
        except (OSError, ValueError) as e:
            self.status.setText(str(e))
            return
        self.index, self.image, self.proposal = index, image, None
        self._show_layers(image, labels)
        if self.folder.has_proposal(index):
            try:
                self._show_proposal(self.folder.proposal(index, image.data.shape))
            except (OSError, ValueError) as e:
                self.status.setText(f"proposal ignored: {e}")
        self.image_list.blockSignals(True)
        self.image_list.setCurrentRow(index)
        self.image_list.blockSignals(False)
        self.sam.on_image_changed()
        state = "labelled" if self.folder.is_labelled(index) else "not labelled yet"
        self.status.setText(f"{self.folder.images[index].name}: {state}")
        self._update_buttons()

    def next_image(self) -> None:
        self.show_image(self.index + 1)

    def previous_image(self) -> None:
        self.show_image(self.index - 1)

    def _on_row(self, row: int) -> None:
        if row != self.index:
            self.show_image(row)

    def save(self) -> bool:
        """Write the current labels if they changed; True when a file was written."""
        if self.folder is None or self.index < 0 or LABELS_LAYER not in self.viewer.layers:
            return False
        try:
            written = self.folder.save(self.index, np.asarray(self.viewer.layers[LABELS_LAYER].data))
        except (OSError, ValueError) as e:
            self.status.setText(f"NOT saved: {e}")
            return False
        if written:
            self._refresh_list()
            self.status.setText(f"saved {self.folder.label_path(self.index).relative_to(self.folder.folder)}")
        return written

    # -- layers ---------------------------------------------------------------------------------
    def _show_layers(self, image: FibsemImage, labels: np.ndarray) -> None:
        assert self.folder is not None
        layers = self.viewer.layers
        reset = IMAGE_LAYER not in layers or layers[IMAGE_LAYER].data.shape != image.data.shape
        if IMAGE_LAYER in layers:
            layers[IMAGE_LAYER].data = image.data
            layers[IMAGE_LAYER].reset_contrast_limits()
        else:
            self.viewer.add_image(image.data, name=IMAGE_LAYER)
        if PROPOSAL_LAYER in layers:
            layers.remove(PROPOSAL_LAYER)
        if LABELS_LAYER in layers:
            layer = layers[LABELS_LAYER]
            layer.data = labels
            layer._reset_history()  # undo must not step back into the previous image
        else:
            layer = self.viewer.add_labels(labels, name=LABELS_LAYER, opacity=0.5)
            for k in range(1, 10):
                layer.bind_key(str(k), lambda _layer, c=k: self.select_class(c), overwrite=True)
            layer.selected_label = next((c for c in self.folder.class_map.ids if c), 1)
            layer.mode = "paint"
        layer.colormap = labels_colormap(self.folder.class_map)
        layers.selection.active = layer
        if reset:
            self.viewer.reset_view()

    def select_class(self, class_id: int) -> None:
        """Paint with ``class_id`` (keys 1-9); ids outside the class map are ignored."""
        if self.folder is None or class_id not in self.folder.class_map.ids or LABELS_LAYER not in self.viewer.layers:
            return
        self.viewer.layers[LABELS_LAYER].selected_label = class_id
        self.palette.blockSignals(True)
        self.palette.setCurrentRow(self.folder.class_map.ids.index(class_id))
        self.palette.blockSignals(False)

    def _on_palette(self, row: int) -> None:
        if self.folder is not None and row >= 0:
            self.select_class(self.folder.class_map.ids[row])

    def _refresh_list(self) -> None:
        if self.folder is None:
            return
        self.image_list.blockSignals(True)
        if self.image_list.count() != len(self.folder):
            self.image_list.clear()
            self.image_list.addItems([""] * len(self.folder))
        for i, path in enumerate(self.folder.images):
            mark = "✓" if self.folder.is_labelled(i) else ("◌" if self.folder.has_proposal(i) else "·")
            self.image_list.item(i).setText(f"{mark} {path.name}")
        self.image_list.setCurrentRow(self.index)
        self.image_list.blockSignals(False)

    def _update_buttons(self) -> None:
        busy, open_ = self._worker is not None, self.folder is not None
        has_model = self.checkpoint is not None
        for b in (self.prev_button, self.next_button, self.save_button):
            b.setEnabled(open_)
        self.prelabel_button.setEnabled(open_ and has_model and not busy)
        self.prelabel_all_button.setEnabled(open_ and has_model and not busy)
        self.stop_button.setEnabled(busy)
        for b in (self.accept_fill_button, self.accept_replace_button, self.discard_button):
            b.setEnabled(self.proposal is not None)

    # -- model proposals ------------------------------------------------------------------------
    def _choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint (bundle, OpenFIBSEM .pt, ONNX)")
        if path:
            self.set_checkpoint(path)

    def set_checkpoint(self, path: str | Path) -> None:
        self.checkpoint = Path(path)
        self.model_label.setText(self.checkpoint.name)
        self._update_buttons()

    def _start(self, func, *args, on_done, on_yield=None) -> None:
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self._worker = start_worker(
            func,
            *args,
            on_returned=lambda r: self._finish(on_done, r),
            on_errored=lambda e: self._finish(on_done, (None, f"{type(e).__name__}: {e}")),
            on_yielded=on_yield,
            on_aborted=lambda: self._finish(on_done, None),  # Stop ends a generator at its next yield
            owner=self,
        )
        self._update_buttons()

    def _finish(self, on_done, result) -> None:
        self._worker = None
        self.progress.setVisible(False)
        on_done(result)
        self._update_buttons()

    def _get_model(self):
        """The checkpoint's model, loaded once (in the worker thread)."""
        if self._model is None or self._model_path != self.checkpoint:
            from napari_fibsem.widgets._llvm_guard import preload_triton

            preload_triton()
            from napari_fibsem.core.models import load_model

            self._model, self._model_path = load_model(self.checkpoint), self.checkpoint
        return self._model

    def propose_current(self) -> None:
        """Segment the shown image in the background; the result appears as a proposal, unsaved."""
        if self.image is None or self.checkpoint is None or self._worker is not None:
            return
        index, data = self.index, self.image.data
        self.status.setText(f"segmenting {self.folder.images[index].name} with {self.checkpoint.name}…")

        def work():
            try:
                return self._get_model().predict(data).mask, ""
            except (OSError, ValueError, ImportError) as e:
                return None, str(e)
            yield  # a generator, so the worker can be quit between steps

        def done(result) -> None:
            mask, error = result if result is not None else (None, "stopped")
            if error:
                self.status.setText(f"proposal failed: {error}")
            elif index == self.index:
                self._show_proposal(mask)
                self.status.setText("proposal shown: Accept writes it into the labels, Discard drops it")

        self._start(work, on_done=done)

    def propose_all(self) -> None:
        """Propose labels for every unlabelled image into ``proposals/`` (saved labels are never touched)."""
        if self.folder is None or self.checkpoint is None or self._worker is not None:
            return
        todo = [p for i, p in enumerate(self.folder.images) if not self.folder.is_labelled(i)]
        out = self.folder.folder / "proposals"

        def work():
            from napari_fibsem.core.inference import predict_folder

            try:
                model = self._get_model()
            except (OSError, ValueError, ImportError) as e:
                return None, str(e)
            failed = []
            for n, path in enumerate(todo, start=1):
                summary = predict_folder(model, [path], out, overwrite=True)
                failed += summary.failed
                yield n, len(todo)
            return failed, ""

        def progressed(value) -> None:
            n, total = value
            self.progress.setRange(0, total)
            self.progress.setValue(n)

        def done(result) -> None:
            failed, error = result if result is not None else ([], "stopped")
            self._refresh_list()
            if error:
                self.status.setText(f"proposals: {error}")
            else:
                self.status.setText(f"proposals written for {len(todo) - len(failed)} unlabelled image(s) to proposals/")
            if self.folder is not None and self.folder.has_proposal(self.index) and self.proposal is None:
                self._show_proposal(self.folder.proposal(self.index, self.image.data.shape))

        self._start(work, on_done=done, on_yield=progressed)

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.quit()

    def _show_proposal(self, mask: np.ndarray) -> None:
        assert self.folder is not None
        self.proposal = mask
        layers = self.viewer.layers
        if PROPOSAL_LAYER in layers:
            layers[PROPOSAL_LAYER].data = mask
        else:
            layer = self.viewer.add_labels(mask, name=PROPOSAL_LAYER, opacity=0.35)
            layer.colormap = labels_colormap(self.folder.class_map)
            layer.editable = False
        layers.selection.active = layers[LABELS_LAYER]
        self._update_buttons()

    def accept_proposal(self, mode: MergeMode = "fill", ask: bool = False) -> bool:
        """Write the proposal into the labels (``fill``: unlabelled pixels only) and save."""
        if self.proposal is None or self.folder is None:
            return False
        layer = self.viewer.layers[LABELS_LAYER]
        current = np.asarray(layer.data)
        if mode == "replace" and ask and current.any():
            answer = QMessageBox.question(
                self, "Replace labels?", "Replace the labels already painted on this image with the proposal?"
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        layer.data = merge(current, self.proposal, mode)
        self.discard_proposal()
        self.save()
        return True

    def discard_proposal(self) -> None:
        if self.folder is not None and self.index >= 0:
            self.folder.discard_proposal(self.index)
        self.proposal = None
        if PROPOSAL_LAYER in self.viewer.layers:
            self.viewer.layers.remove(PROPOSAL_LAYER)
        self._refresh_list()
        self._update_buttons()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.save()
        super().closeEvent(event)

