"""What the labelling dock's panels use of the dock: a protocol, so a panel needs no import of it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from napari_fibsem.core.data.label_folder import LabelFolder
    from napari_fibsem.core.io.imageio import FibsemImage
    from napari_fibsem.widgets._labelling_layers import LabellingLayers


class LabellingHost(Protocol):
    """The open folder, the image shown (``index`` in the folder), its layers and the status line."""

    folder: LabelFolder | None
    @property
    def index(self) -> int: ...
    image: FibsemImage | None
    layers: LabellingLayers

    @property
    def current_name(self) -> str: ...
    def say(self, text: str, error: bool = False) -> None: ...
    def refresh_list(self) -> None: ...
    def save(self) -> bool: ...
