"""SAM / MobileSAM-assisted labelling inside the labelling dock: prompts -> preview -> commit.

Clicks in the ``sam prompts`` Points layer (Shift+click, or T to switch, for negative points) and a
rectangle in the ``sam box`` Shapes layer become a preview in the current class colour; C commits
it into the labels through napari's own Labels history (Ctrl+Z takes it back), X clears the
prompts. The prompt layer is selected, in add mode, as soon as an image's embedding exists. The
embedding is computed off the UI thread and cached by :class:`~napari_fibsem.core.sam.service.SamService`;
the neighbours of the shown image are prefetched.

Time to the first prompt: most of it is importing torch and the SAM package (several seconds in a
fresh napari process), so pressing "SAM checkpoint…" starts those imports in the background while
the person is still choosing the file; progress and each stage's time are shown.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from napari_fibsem._colormap import labels_colormap
from napari_fibsem.widgets._common import start_worker

PROMPTS, BOX, PREVIEW = "sam prompts", "sam box", "sam preview"
SHORTCUTS = (
    "Click: positive point · Shift+click or T: negative · B: box / points · C: commit · X: clear · "
    "Ctrl+Z: undo · N / Shift+N: next / previous image"
)


class SamAssist(QGroupBox):
    """The SAM group of the labelling dock (``owner``); owns one ``SamService``."""

    def __init__(self, owner: Any) -> None:
        super().__init__("SAM-assisted")
        self.owner = owner
        self.service: Any = None
        self.embedding: Any = None
        self.preview: np.ndarray | None = None
        self._worker: Any = None
        self._embedding_for = -1
        self._load_seconds = ""
        self._held: list[Any] = [None]  # the service, for closing it once this widget is gone
        held = self._held
        self.destroyed.connect(lambda *_: _close_in_background(held[0]))

        self.model_type = QComboBox()
        self.model_type.addItems(["auto", "vit_t", "vit_b", "vit_l", "vit_h"])
        self.model_type.setToolTip("auto: recognised from the weights (vit_t = MobileSAM)")
        self.load_button = QPushButton("SAM checkpoint…")
        self.load_button.clicked.connect(self._choose)
        self.negative = QCheckBox("negative points (T)")
        self.negative.toggled.connect(self._on_negative)
        self.paint_over = QCheckBox("paint over labels")
        self.commit_button = QPushButton("Commit (C)")
        self.commit_button.clicked.connect(self.commit)
        self.undo_button = QPushButton("Undo (Ctrl+Z)")
        self.undo_button.clicked.connect(self.undo)
        self.clear_button = QPushButton("Clear prompts (X)")
        self.clear_button.clicked.connect(self.clear_prompts)
        self.shortcuts = QLabel(SHORTCUTS)
        self.shortcuts.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setVisible(False)
        self.status = QLabel("no SAM model (vit_t = MobileSAM; checkpoints are files you provide)")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        for widgets in ((self.load_button, self.model_type), (self.negative, self.paint_over),
                        (self.commit_button, self.undo_button, self.clear_button)):  # fmt: skip
            row = QHBoxLayout()
            for w in widgets:
                row.addWidget(w)
            layout.addLayout(row)
        layout.addWidget(self.shortcuts)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self._update_buttons()

    # -- model ----------------------------------------------------------------------------------
    def _choose(self) -> None:
        _warm_imports(self.model_type.currentText())  # while the person picks the file
        path, _ = QFileDialog.getOpenFileName(self, "SAM / MobileSAM checkpoint (.pth / .pt)")
        if path:
            self.load(path)

    def load(self, checkpoint: str | Path) -> None:
        """Load a checkpoint in the background with progress; errors (missing file, wrong weights) show here."""
        kind = None if self.model_type.currentText() == "auto" else self.model_type.currentText()
        name = Path(checkpoint).name

        def work():
            t0 = time.perf_counter()
            yield "loading torch (once per napari session)…"
            import torch  # noqa: F401

            from napari_fibsem.core.sam.service import SamService, load_sam

            t1 = time.perf_counter()
            yield f"reading {name} and building the model (the SAM package loads the first time)…"
            try:
                model = load_sam(checkpoint, kind)
            except (OSError, ValueError, ImportError) as e:
                return None, str(e)
            t2 = time.perf_counter()
            return SamService(model), f"loaded in {t2 - t0:.1f} s (torch {t1 - t0:.1f} s, SAM package and model {t2 - t1:.1f} s)"

        def done(result) -> None:
            service, text = result
            if service is None:
                self._say(f"SAM not loaded: {text}", error=True)
            else:
                self._load_seconds = text
                self.set_service(service)

        self._start(work, done)

    def set_service(self, service: Any) -> None:
        if self.service is not None and self.service is not service:
            _close_in_background(self.service)
        self.service, self.embedding, self._embedding_for = service, None, -1
        self._held[0] = service
        self._say(f"SAM {service.model.model_type} {self._load_seconds}".strip())
        self.on_image_changed()

    # -- per image --------------------------------------------------------------------------------
    def on_image_changed(self) -> None:
        """New image: drop prompts and preview, embed it in the background, prefetch neighbours."""
        self.clear_prompts()
        self.embedding = None
        w = self.owner
        if self.service is None or w.image is None or w.folder is None:
            self._update_buttons()
            return
        index, data, service = w.index, w.image.data, self.service
        neighbours = [w.folder.images[j] for j in (index + 1, index - 1) if 0 <= j < len(w.folder)]

        def work():
            yield f"computing the embedding of {w.current_name}…"
            t0 = time.perf_counter()
            try:
                emb = service.embed(data)
                service.warm_up(emb)  # so the first click is as quick as the next ones
            finally:  # reading the neighbours is file I/O: it stays in the worker too
                _prefetch(service, neighbours)
            return emb, f"{time.perf_counter() - t0:.1f} s"

        def done(result) -> None:
            emb, text = result
            if emb is None:
                self._say(f"embedding failed: {text}", error=True)
            elif index == self.owner.index:
                self.embedding, self._embedding_for = emb, index
                self._ensure_layers()
                self._say(f"SAM ready (embedding {text}{'; model ' + self._load_seconds if self._load_seconds else ''})"
                          ": click on the object in 'sam prompts'")  # fmt: skip
                self._load_seconds = ""
                self.update_preview()

        self._start(work, done)

    def _ensure_layers(self) -> None:
        """Create the prompt layers once; leave the prompt layer selected in add mode (click = prompt)."""
        viewer, layers = self.owner.viewer, self.owner.viewer.layers
        size = max(6, round(max(self.owner.image.data.shape[:2]) / 100))  # ~15 px on a 1536-px image
        if BOX not in layers:
            box = viewer.add_shapes(name=BOX, edge_color="#ffff00", face_color="transparent",
                                    edge_width=max(2, size // 5))  # fmt: skip
            box.events.data.connect(lambda e: self.update_preview())
            self._bind_keys(box)
        if PROMPTS not in layers:
            pts = viewer.add_points(
                np.empty((0, 2)), name=PROMPTS, features={"positive": np.array([], dtype=bool)},
                feature_defaults={"positive": not self.negative.isChecked()}, face_color="positive",
                face_color_cycle={True: "#00ff00", False: "#ff0000"}, border_color="white",
            )  # fmt: skip
            pts.events.data.connect(lambda e: self.update_preview())
            pts.mouse_drag_callbacks.insert(0, self._shift_click_is_negative)
            self._bind_keys(pts)
        layers[PROMPTS].selected_data = set()  # napari resizes the selected points with current_size
        layers[PROMPTS].current_size = size
        layers.move(layers.index(PROMPTS), len(layers))  # on top, so clicks land on it
        self.select_prompts()

    def select_prompts(self) -> None:
        layer = self.owner.viewer.layers[PROMPTS]
        self.owner.viewer.layers.selection.active = layer
        layer.mode = "add"

    def _bind_keys(self, layer: Any) -> None:
        self.owner.layers.bind_keys(layer)  # classes 1-9, next / previous image
        keys = {"t": lambda: self.negative.toggle(), "c": self.commit, "x": self.clear_prompts,
                "b": self._toggle_box, "Control-z": self.undo}  # fmt: skip
        for key, action in keys.items():
            layer.bind_key(key, lambda _layer, f=action: f(), overwrite=True)

    def _toggle_box(self) -> None:
        layers = self.owner.viewer.layers
        if BOX not in layers or PROMPTS not in layers:
            return
        if layers.selection.active is layers[BOX]:
            self.select_prompts()
        else:
            layers.selection.active = layers[BOX]
            layers[BOX].mode = "add_rectangle"

    def _shift_click_is_negative(self, layer: Any, event: Any) -> None:
        """Before napari's add: a Shift+click places a negative point, a plain click the default."""
        shift = "Shift" in {str(getattr(m, "name", m)) for m in event.modifiers}
        layer.feature_defaults = {"positive": not (shift or self.negative.isChecked())}

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
            result = self.service.predict(self.embedding, points or None, labels or None, box,
                                          multimask=len(points) == 1 and box is None)  # fmt: skip
        except ValueError as e:
            self._say(f"prompt ignored: {e}")
            return
        self.preview = result.mask
        shown = (result.mask * self._class_id()).astype(np.uint8)
        if PREVIEW in layers:
            layers[PREVIEW].data = shown
        else:
            layer = self.owner.viewer.add_labels(shown, name=PREVIEW, opacity=0.6)
            layer.editable = False
            layers.move(layers.index(PREVIEW), layers.index(BOX))  # below the prompts
        layers[PREVIEW].colormap = labels_colormap(self.owner.folder.class_map)
        if PROMPTS in layers and layers.selection.active is not layers[BOX]:
            self.select_prompts()  # the next click is another prompt
        self._say(f"preview: {int(result.mask.sum()):,} px (score {result.score:.2f}); C commits it")
        self._update_buttons()

    def _class_id(self) -> int:
        return int(self.owner.layers.labels.selected_label)

    # -- commit / undo ----------------------------------------------------------------------------
    def commit(self) -> bool:
        """Write the preview with the current class into the labels, as one step of napari's history."""
        if self.preview is None:
            return False
        layer = self.owner.layers.labels
        target = self.preview if self.paint_over.isChecked() else (self.preview & (np.asarray(layer.data) == 0))
        cls = self._class_id()
        layer.data_setitem(np.nonzero(target), cls)
        self.clear_prompts()
        self._say(f"committed {int(target.sum()):,} px as {self.owner.folder.class_map.classes[cls].name}"
                  " (Ctrl+Z undoes)")  # fmt: skip
        return True

    def undo(self) -> bool:
        """Napari's undo on the labels (the last commit, paint or fill)."""
        layer = self.owner.layers.labels
        if layer is None:
            return False
        layer.undo()
        self._say("undone (napari's Ctrl+Z on the labels)")
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
    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        if error:
            show_error(text)

    def _start(self, work, done) -> None:
        worker = None

        def finish(result) -> None:
            if self._worker is worker:  # a newer job may have started meanwhile: leave it
                self._worker = None
                self.progress.setVisible(False)
            done(result)
            self._update_buttons()

        self.progress.setVisible(True)
        worker = start_worker(work, on_returned=finish, on_yielded=self.status.setText,
                              on_errored=lambda e: finish((None, f"{type(e).__name__}: {e}")), owner=self)  # fmt: skip
        self._worker = worker
        self._update_buttons()

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def _update_buttons(self) -> None:
        self.commit_button.setEnabled(self.preview is not None)
        self.undo_button.setEnabled(self.owner.layers.labels is not None)
        self.clear_button.setEnabled(self.service is not None)


def _warm_imports(kind: str) -> None:
    """Import torch and the SAM package in a background thread (the file dialog hides the wait)."""

    def run() -> None:
        try:
            import napari_fibsem.core.sam.service  # noqa: F401
            from napari_fibsem.core.sam.models import _package

            for k in ("vit_t", "vit_b") if kind == "auto" else (kind,):
                _package(k)
        except ImportError:
            pass  # load() reports a missing package to the person

    threading.Thread(target=run, name="napari-fibsem-sam-imports", daemon=True).start()


def _close_in_background(service: Any) -> None:
    """Stop a service's prefetch thread without blocking the UI thread on its current encoder run."""
    if service is not None:
        threading.Thread(target=service.close, name="napari-fibsem-sam-close", daemon=True).start()


def _prefetch(service: Any, paths: list[Path]) -> None:
    """Queue the embeddings of ``paths`` (unreadable images are simply not prefetched)."""
    from napari_fibsem.core.io.imageio import read_image

    images = []
    for path in paths:
        try:
            images.append(read_image(path, convert="mean").data)
        except (OSError, ValueError):
            continue
    service.prefetch(images, replace=True)
