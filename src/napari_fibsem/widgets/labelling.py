"""Label segmentation masks image by image: by hand, from a model's proposal, or with SAM.

A thin view over :class:`~napari_fibsem.core.data.label_folder.LabelFolder`. One image at a time, its
labels in the only Labels layer (named for the file), coloured by the folder's class map: napari's
brush, fill, eraser and Ctrl+Z do the editing; keys 1-9 pick a class. Moving to another image saves
the labels if they changed (atomically, as uint8 class ids in ``labels/``). Model proposals
(:mod:`._labelling_proposals`) and SAM (:mod:`._sam_assist`) are groups of this dock.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_fibsem._layer_meta import opened_folder
from napari_fibsem._stack_view import retire_reader_layers
from napari_fibsem.core.data.label_folder import LabelFolder
from napari_fibsem.core.io.imageio import FibsemImage
from napari_fibsem.widgets._common import VerticalScroll, swatch
from napari_fibsem.widgets._folder_nav import FolderNavigator
from napari_fibsem.widgets._labelling_layers import LabellingLayers
from napari_fibsem.widgets._labelling_proposals import ProposalPanel
from napari_fibsem.widgets._sam_assist import SamAssist

if TYPE_CHECKING:
    import napari

HELP = (
    "<b>Label segmentation</b>: drag a folder of TIFFs into napari and press <i>Use the opened folder</i> "
    "(or open one here). Paint with napari's brush (P), fill (F), erase (E); keys <b>1-9</b> choose a class; "
    "<b>Ctrl+Z</b> undoes. <b>N</b> / <b>Shift+N</b> (or PageDown / PageUp): next / previous image; "
    "labels are saved to <i>labels/</i> when you move on."
)


class LabellingWidget(QWidget):
    """Folder -> image list, class palette, navigation with autosave; proposal and SAM groups."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.folder: LabelFolder | None = None
        self.image: FibsemImage | None = None
        self.layers = LabellingLayers(viewer, self.select_class,
                                      {"n": self.next_image, "Shift-n": self.previous_image})  # fmt: skip

        self.help = QLabel(HELP)
        self.help.setWordWrap(True)
        self.nav = FolderNavigator("✓ labelled   ◌ has a proposal   · not labelled yet",
                                   "The folder a layer was read from (drag a folder into napari)")  # fmt: skip
        self.nav.go.connect(self.show_image)
        self.nav.folder_chosen.connect(self.open_folder)
        self.nav.use_opened.connect(self.open_from_layer)
        self.image_list, self.from_layer_button = self.nav.image_list, self.nav.from_layer_button
        self.prev_button, self.next_button = self.nav.prev_button, self.nav.next_button
        self.current_label = QLabel("")
        self.current_label.setWordWrap(True)
        self.palette = QListWidget()
        self.palette.currentRowChanged.connect(self._on_palette)
        self.save_button = QPushButton("Save")
        self.save_button.clicked.connect(self.save)
        self.proposals = ProposalPanel(self)
        self.sam = SamAssist(self)
        self.status = QLabel("Open a folder of images; labels go to its labels/ folder.")
        self.status.setWordWrap(True)

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addWidget(self.help)
        self.image_list.setMinimumHeight(90)
        self.palette.setMinimumHeight(120)
        layout.addWidget(self.nav, stretch=2)
        layout.addWidget(self.current_label)
        layout.addWidget(QLabel("Classes (keys 1-9)"))
        layout.addWidget(self.palette, stretch=1)
        nav = QHBoxLayout()
        for b in (self.prev_button, self.next_button, self.save_button):
            nav.addWidget(b)
        layout.addLayout(nav)
        layout.addWidget(self.proposals)
        layout.addWidget(self.sam)
        layout.addWidget(self.status)
        outer = QVBoxLayout(self)  # scrolls rather than squeezing its rows when docks share the side
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(VerticalScroll(content))
        self._update_buttons()
        self.nav.bind_viewer_keys(viewer)

    # -- messages -------------------------------------------------------------------------------
    def say(self, text: str, error: bool = False) -> None:
        """Status line; errors also reach the person as a napari notification."""
        self.status.setText(text)
        if error:
            show_error(text)

    @property
    def index(self) -> int:
        """The image shown, kept by the folder state; -1 when none."""
        return self.folder.index if self.folder is not None else -1

    @property
    def current_name(self) -> str:
        return (self.folder.current_name or "") if self.folder is not None else ""

    # -- opening and navigating -----------------------------------------------------------------
    def open_from_layer(self) -> bool:
        """Open the folder that the selected (or any) layer was read from by our reader."""
        folder = opened_folder(self.viewer)
        if folder is not None:
            return self.open_folder(folder)
        self.say("no layer here was opened from a folder: drag a folder of TIFFs into napari first", error=True)
        return False

    def open_folder(self, folder: str | Path) -> bool:
        self.save()
        try:
            opened = LabelFolder(folder)
        except (OSError, ValueError) as e:
            self.say(f"cannot open {folder}: {e}", error=True)
            return False
        self.folder = opened
        self.nav.show_folder(opened, f"folder: {opened.folder}")
        self.palette.blockSignals(True)
        self.palette.clear()
        for cid, info in opened.class_map.classes.items():
            key = f"{cid}  " if 1 <= cid <= 9 else "   "
            self.palette.addItem(QListWidgetItem(swatch(info.color), f"{key}{info.name}"))
        self.palette.blockSignals(False)
        message = retire_reader_layers(self.viewer, opened.folder)
        self.refresh_list()
        self.show_image(0)
        labelled = opened.done_count()
        self.say(f"{len(opened)} images, {labelled} labelled. {message}".strip())
        if message:
            show_info(message)
        return True

    def show_image(self, index: int) -> None:
        """Save the current labels if they changed, then show image ``index``."""
        if self.folder is None or not self.folder.has(index):
            return
        self.save()
        try:
            image, labels = self.folder.load(index)
        except (OSError, ValueError) as e:
            self.say(str(e), error=True)
            return
        self.folder.index, self.image = index, image
        self.proposals.clear()
        self.layers.show(self.current_name, image.data, labels, self.folder.class_map, self.folder.folder)
        self.select_class(int(self.layers.labels.selected_label))
        if self.folder.has_proposal(index):
            try:
                self.proposals.show(self.folder.proposal(index, image.data.shape))
            except (OSError, ValueError) as e:
                self.say(f"proposal ignored: {e}", error=True)
        self.nav.show_current()
        self.sam.on_image_changed()
        self._show_current()
        self._update_buttons()

    def _show_current(self) -> None:
        if self.folder is None or self.index < 0:
            return
        state = "labelled" if self.folder.is_labelled(self.index) else "not labelled yet"
        h, w = self.image.data.shape[:2]
        self.current_label.setText(
            f"<b>{self.current_name}</b> — image {self.index + 1} of {len(self.folder)}, {w}x{h}, {state}"
        )

    def next_image(self) -> None:
        self.show_image(self.index + 1)

    def previous_image(self) -> None:
        self.show_image(self.index - 1)

    def save(self) -> bool:
        """Write the current labels if they changed; True when a file was written."""
        layer = self.layers.labels
        if self.folder is None or self.index < 0 or layer is None or layer not in self.viewer.layers:
            return False
        try:
            written = self.folder.save(self.index, np.asarray(layer.data))
        except (OSError, ValueError) as e:
            self.say(f"NOT saved: {e}", error=True)
            return False
        if written:
            self.refresh_list()
            self._show_current()
            self.say(f"saved {self.folder.label_path(self.index).relative_to(self.folder.folder)}")
        return written

    # -- classes --------------------------------------------------------------------------------
    def select_class(self, class_id: int) -> None:
        """Paint with ``class_id`` (keys 1-9); ids outside the class map are ignored."""
        layer = self.layers.labels
        if self.folder is None or class_id not in self.folder.class_map.ids or layer is None:
            return
        layer.selected_label = class_id
        self.palette.blockSignals(True)
        self.palette.setCurrentRow(self.folder.class_map.ids.index(class_id))
        self.palette.blockSignals(False)
        self.sam.update_preview()  # the preview takes the class colour

    def _on_palette(self, row: int) -> None:
        if self.folder is not None and row >= 0:
            self.select_class(self.folder.class_map.ids[row])

    # -- list and buttons -----------------------------------------------------------------------
    def refresh_list(self) -> None:
        if self.folder is None:
            return
        folder = self.folder
        marks = ["✓" if folder.is_labelled(i) else ("◌" if folder.has_proposal(i) else "·") for i in range(len(folder))]
        self.nav.show_items([f"{mark} {path.name}" for mark, path in zip(marks, folder.images)])

    def _update_buttons(self) -> None:
        self.nav.update_buttons()
        self.save_button.setEnabled(self.folder is not None)
        self.proposals.update_buttons()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        self.save()
        super().closeEvent(event)
