"""The folder part of the labelling and keypoint docks: open a folder, see its files, step through them.

One widget so both docks look and steer alike: 'Open image folder…' and 'Use the opened folder',
the folder line, the file list with each dock's done marks, Previous / Next and PageDown / PageUp.
It is a view over the dock's :class:`~napari_fibsem.core.data.image_folder_state.ImageFolderState`
and never loads or saves: it emits ``go`` with the image wanted and the dock saves, then shows it.
Previous / Next belong to it but the dock places them (next to its own buttons).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QListWidget, QPushButton, QVBoxLayout, QWidget

if TYPE_CHECKING:
    import napari

    from napari_fibsem.core.data.image_folder_state import ImageFolderState


class FolderNavigator(QWidget):
    """Folder buttons, folder line and file list; ``go(index)`` asks the dock to show an image."""

    go = Signal(int)
    folder_chosen = Signal(str)
    use_opened = Signal()

    def __init__(self, list_tip: str, from_layer_tip: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state: ImageFolderState | None = None
        self.open_button = QPushButton("Open image folder…")
        self.open_button.clicked.connect(self._choose_folder)
        self.from_layer_button = QPushButton("Use the opened folder")
        self.from_layer_button.setToolTip(from_layer_tip)
        self.from_layer_button.clicked.connect(self.use_opened)
        self.folder_label = QLabel("no folder open")
        self.folder_label.setWordWrap(True)
        self.image_list = QListWidget()
        self.image_list.setToolTip(list_tip)
        self.image_list.currentRowChanged.connect(self._on_row)
        self.prev_button, self.next_button = QPushButton("◀ Previous"), QPushButton("Next ▶")
        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(1))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(self.open_button, stretch=1)
        top.addWidget(self.from_layer_button, stretch=1)
        layout.addLayout(top)
        layout.addWidget(self.folder_label)
        layout.addWidget(self.image_list, stretch=1)

    def bind_viewer_keys(self, viewer: napari.viewer.Viewer) -> None:
        """PageDown / PageUp step through the folder whichever layer is selected."""
        for key, delta in (("PageDown", 1), ("PageUp", -1)):
            viewer.bind_key(key, lambda _v, d=delta: self.step(d), overwrite=True)

    def step(self, delta: int) -> None:
        """Ask for the image ``delta`` away from the one shown (the dock ignores one past either end)."""
        index = self.state.index if self.state is not None else -1
        self.go.emit(index + delta)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images to label")
        if folder:
            self.folder_chosen.emit(folder)

    def _on_row(self, row: int) -> None:
        if self.state is not None and row != self.state.index:
            self.go.emit(row)

    # -- showing ----------------------------------------------------------------------------------
    def show_folder(self, state: ImageFolderState, text: str, tip: str = "") -> None:
        """A folder was opened: its line and its file names (the dock adds the marks)."""
        self.state = state
        self.folder_label.setText(text)
        if tip:
            self.folder_label.setToolTip(tip)
        self.show_items([path.name for path in state.images])

    def show_items(self, texts: Sequence[str]) -> None:
        """One line per image (mark and name), the shown image selected; emits nothing."""
        self.image_list.blockSignals(True)
        if self.image_list.count() != len(texts):
            self.image_list.clear()
            self.image_list.addItems([""] * len(texts))
        for i, text in enumerate(texts):
            self.image_list.item(i).setText(text)
        self.image_list.blockSignals(False)
        self.show_current()

    def show_current(self) -> None:
        """Select the shown image's row, without asking to show it again."""
        self.image_list.blockSignals(True)
        self.image_list.setCurrentRow(self.state.index if self.state is not None else -1)
        self.image_list.blockSignals(False)

    def update_buttons(self) -> None:
        """Previous / Next only where there is an image to go to."""
        state = self.state
        self.prev_button.setEnabled(state is not None and state.has_previous)
        self.next_button.setEnabled(state is not None and state.has_next)
