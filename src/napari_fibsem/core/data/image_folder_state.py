"""What both labelling tools know of a folder: its images in order, which one is shown, which are done.

:class:`~napari_fibsem.core.data.label_folder.LabelFolder` (masks) and
:class:`~napari_fibsem.core.data.keypoint_labels.KeypointLabels` (points) build on this, and the
docks' shared folder navigator reads it, so stepping through a folder works the same in both.
"""

from __future__ import annotations

from pathlib import Path

from napari_fibsem.core.io.imageio import image_folder


class ImageFolderState:
    """The images of ``folder`` and the one on screen (``index``; -1 until the first is shown)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.images = image_folder(self.folder)
        self.index = -1

    def __len__(self) -> int:
        return len(self.images)

    def has(self, i: int) -> bool:
        """Whether ``i`` is an image of the folder (stepping past either end goes nowhere)."""
        return 0 <= i < len(self.images)

    @property
    def current_name(self) -> str | None:
        """File name of the image shown; None before one is."""
        return self.images[self.index].name if self.has(self.index) else None

    @property
    def has_previous(self) -> bool:
        return self.index > 0

    @property
    def has_next(self) -> bool:
        return self.index < len(self.images) - 1

    def is_done(self, i: int) -> bool:
        """Whether image ``i`` needs no more work; each kind of labelling says what that means."""
        raise NotImplementedError

    def done_count(self) -> int:
        return sum(self.is_done(i) for i in range(len(self.images)))
