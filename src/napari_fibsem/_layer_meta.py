"""What our reader records in a layer's metadata, and the one way the docks read it back.

The reader stores, under ``layer.metadata["napari_fibsem"]``, the folder, the file of each stack
slice and its original size (the writer, the file-name overlay and the docks' "use the opened
folder" buttons all read it from here). A dock showing one image of a folder records the same
``folder`` with ``"dock": NAME``, so the other docks find the folder being worked on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

META_KEY = "napari_fibsem"


def reader_meta(layer: Any) -> dict[str, Any]:
    """The reader's record of ``layer`` (empty for layers we did not read)."""
    return (getattr(layer, "metadata", None) or {}).get(META_KEY) or {}


def opened_folder(viewer: Any) -> Path | None:
    """The folder a layer came from, the selected layer first: our reader's record, else the
    folder of the file napari read it from (``layer.source.path``)."""
    active = viewer.layers.selection.active
    ordered = ([active] if active is not None else []) + [ly for ly in viewer.layers if ly is not active]
    for layer in ordered:
        folder = reader_meta(layer).get("folder")
        if folder:
            return Path(folder)
        source = getattr(getattr(layer, "source", None), "path", None)
        if source:
            p = Path(source)
            return p if p.is_dir() else p.parent
    return None
