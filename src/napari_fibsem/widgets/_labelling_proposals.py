"""Model-assisted labelling inside the labelling dock: a checkpoint proposes, the person accepts.

A proposal is shown as outlines in its own layer and says what it holds (pixels per class, or
that the model found nothing); it becomes labels only when accepted, through napari's own Labels
history (so Ctrl+Z takes an accept back). Proposals for all unlabelled images go to
``proposals/``, never over saved labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.notifications import show_info
from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from napari_fibsem.core.data.label_folder import MergeMode, merge
from napari_fibsem.widgets._common import start_worker
from napari_fibsem.widgets._labelling_layers import proposal_summary

if TYPE_CHECKING:
    from napari_fibsem.widgets._labelling_host import LabellingHost


class ProposalPanel(QGroupBox):
    """Checkpoint, propose (this image / all unlabelled), accept (fill / replace), discard."""

    def __init__(self, owner: LabellingHost) -> None:
        super().__init__("Model-assisted")
        self.owner = owner
        self.proposal: np.ndarray | None = None
        self.checkpoint: Path | None = None
        self._model: Any = None
        self._model_path: Path | None = None
        self._worker: Any = None

        self.model_button = QPushButton("Checkpoint…")
        self.model_button.clicked.connect(self._choose_model)
        self.model_label = QLabel("no model (a bundle from Train, an OpenFIBSEM .pt or an ONNX file)")
        self.model_label.setWordWrap(True)
        self.propose_button = QPushButton("Propose for this image")
        self.propose_button.clicked.connect(self.propose_current)
        self.propose_all_button = QPushButton("Propose for all unlabelled")
        self.propose_all_button.clicked.connect(self.propose_all)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.accept_fill_button = QPushButton("Accept (unlabelled pixels)")
        self.accept_fill_button.clicked.connect(lambda: self.accept("fill"))
        self.accept_replace_button = QPushButton("Accept (replace)…")
        self.accept_replace_button.clicked.connect(lambda: self.accept("replace", ask=True))
        self.discard_button = QPushButton("Discard")
        self.discard_button.clicked.connect(self.discard)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setVisible(False)

        grid = QVBoxLayout(self)
        for widgets in ((self.model_button, self.model_label),
                        (self.propose_button, self.propose_all_button, self.stop_button),
                        (self.accept_fill_button, self.accept_replace_button, self.discard_button)):  # fmt: skip
            row = QHBoxLayout()
            for w in widgets:
                row.addWidget(w, stretch=1 if isinstance(w, QLabel) else 0)
            grid.addLayout(row)
        grid.addWidget(self.summary)
        grid.addWidget(self.progress)
        self.update_buttons()

    # -- model ----------------------------------------------------------------------------------
    def _choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint (bundle, OpenFIBSEM .pt, ONNX)")
        if path:
            self.set_checkpoint(path)

    def set_checkpoint(self, path: str | Path) -> None:
        """Use ``path`` for proposals (loaded on first use, in the worker)."""
        self.checkpoint = Path(path)
        self.model_label.setText(f"model: {self.checkpoint.name}")
        self.model_label.setToolTip(str(self.checkpoint))
        self.update_buttons()

    def _get_model(self) -> Any:
        """The checkpoint's model, loaded once (called in the worker thread)."""
        if self._model is None or self._model_path != self.checkpoint:
            from napari_fibsem.core.models import load_model

            self._model, self._model_path = load_model(self.checkpoint), self.checkpoint
        return self._model

    # -- proposing ------------------------------------------------------------------------------
    def propose_current(self) -> None:
        """Segment the shown image in the background; the result appears as a proposal, unsaved."""
        w = self.owner
        if w.image is None or self.checkpoint is None or self._worker is not None:
            return
        index, data, name = w.index, w.image.data, w.current_name
        w.say(f"segmenting {name} with {self.checkpoint.name}…")

        def work():
            try:
                return self._get_model().predict(data).mask, ""
            except (OSError, ValueError, ImportError) as e:
                return None, str(e)
            yield  # a generator, so Stop can end it

        def done(result) -> None:
            mask, error = result if result is not None else (None, "stopped")
            if error:
                w.say(f"proposal failed: {error}", error=error != "stopped")
            elif index == w.index:
                self.show(mask)

        self._start(work, done)

    def propose_all(self) -> None:
        """Propose labels for every unlabelled image into ``proposals/`` (saved labels are never touched)."""
        w = self.owner
        if w.folder is None or self.checkpoint is None or self._worker is not None:
            return
        folder = w.folder
        todo = [p for i, p in enumerate(folder.images) if not folder.is_labelled(i)]
        out = folder.folder / "proposals"

        def work():
            from napari_fibsem.core.models.inference import iter_predict_folder

            try:
                model = self._get_model()
            except (OSError, ValueError, ImportError) as e:
                return None, str(e)
            failed = []
            for summary in iter_predict_folder(model, todo, out, overwrite=True) if todo else ():
                failed = summary.failed
                yield summary.done, summary.total
            return failed, ""

        def progressed(value) -> None:
            n, total = value
            self.progress.setRange(0, total)
            self.progress.setValue(n)
            self.progress.setFormat("%v / %m images")

        def done(result) -> None:
            failed, error = result if result is not None else ([], "stopped")
            w.refresh_list()
            if error:
                w.say(f"proposals: {error}", error=error != "stopped")
                return
            w.say(f"proposals written for {len(todo) - len(failed)} unlabelled image(s) to proposals/"
                  + (f"; {len(failed)} failed: {failed[0]}" if failed else ""), error=bool(failed))  # fmt: skip
            if w.folder is folder and folder.has_proposal(w.index) and self.proposal is None:
                self.show(folder.proposal(w.index, w.image.data.shape))

        self._start(work, done, progressed)

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.quit()

    def _start(self, work, done, on_yield=None) -> None:
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)

        def finish(result) -> None:
            self._worker = None
            self.progress.setVisible(False)
            done(result)
            self.update_buttons()

        self._worker = start_worker(
            work,
            on_returned=finish,
            on_errored=lambda e: finish((None, f"{type(e).__name__}: {e}")),
            on_yielded=on_yield,
            on_aborted=lambda: finish(None),  # Stop ends a generator at its next yield
            owner=self,
        )
        self.update_buttons()

    # -- showing and accepting ------------------------------------------------------------------
    def show(self, mask: np.ndarray) -> None:
        """Show ``mask`` as the current image's proposal, with what it holds."""
        w = self.owner
        assert w.folder is not None
        self.proposal = mask
        text = proposal_summary(mask, w.folder.class_map)
        if not mask.any():
            self.summary.setText(text)
            w.say(text)
            show_info(f"{w.current_name}: {text}")
        else:
            w.layers.show_proposal(w.current_name, mask, w.folder.class_map)
            self.summary.setText(f"{text}. Outlines: the proposal; Accept writes it into the labels.")
            w.say(f"{w.current_name}: proposal shown (outlines)")
        self.update_buttons()

    def accept(self, mode: MergeMode = "fill", ask: bool = False) -> bool:
        """Write the proposal into the labels (``fill``: unlabelled pixels only) as one undoable edit, and save."""
        w = self.owner
        if self.proposal is None or w.folder is None or w.layers.labels is None:
            return False
        layer = w.layers.labels
        current = np.asarray(layer.data)
        if mode == "replace" and ask and current.any():
            answer = QMessageBox.question(
                self, "Replace labels?", "Replace the labels already painted on this image with the proposal?"
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        merged = merge(current, self.proposal, mode)
        changed = np.nonzero(merged != current)
        layer.data_setitem(changed, merged[changed])  # through napari's history: Ctrl+Z undoes it
        self.discard()
        w.save()
        return True

    def discard(self) -> None:
        w = self.owner
        if w.folder is not None and w.index >= 0:
            w.folder.discard_proposal(w.index)
        self.clear()
        w.refresh_list()

    def clear(self) -> None:
        """Forget the shown proposal (navigation; the file in proposals/ stays)."""
        self.proposal = None
        self.summary.setText("")
        self.owner.layers.remove_proposal()
        self.update_buttons()

    def update_buttons(self) -> None:
        busy, open_ = self._worker is not None, self.owner.folder is not None
        ready = open_ and self.checkpoint is not None and not busy
        self.propose_button.setEnabled(ready)
        self.propose_all_button.setEnabled(ready)
        self.stop_button.setEnabled(busy)
        has = self.proposal is not None and bool(self.proposal.any())
        for b in (self.accept_fill_button, self.accept_replace_button):
            b.setEnabled(has)
        self.discard_button.setEnabled(self.proposal is not None)
