"""How a folder stack read by our reader behaves in the viewer: which file is on screen, edits noted.

A folder opened by our reader is one stack whose slider says only "3"; the person needs the file
name. The reader calls :func:`follow` on the viewer it is reading into; napari's text overlay then
shows "synthetic_0003.tif (4/12)" for the selected (else topmost visible) stack layer of ours, and
hides again when no such layer is left (we only write to it while showing a file name and never
clear text somebody else put there). Painting into one of our Labels layers sets ``edited`` in its
reader record, so a dock that replaces the layer knows whether work would be lost.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from napari_fibsem._layer_meta import reader_meta

_FOLLOWED: weakref.WeakSet[Any] = weakref.WeakSet()
_SHOWN: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def follow(viewer: Any) -> None:
    """Keep ``viewer``'s text overlay on the file under the slider (idempotent)."""
    if viewer is None or viewer in _FOLLOWED:
        return
    _FOLLOWED.add(viewer)
    ref = weakref.ref(viewer)

    def update(*_: Any) -> None:
        v = ref()
        if v is not None:
            refresh(v)

    viewer.dims.events.current_step.connect(update)
    viewer.layers.selection.events.active.connect(update)
    viewer.layers.events.inserted.connect(update)
    viewer.layers.events.inserted.connect(_note_edits)
    viewer.layers.events.inserted.connect(lambda e: e.value.events.visible.connect(update))
    viewer.layers.events.removed.connect(update)


def _note_edits(event: Any) -> None:
    layer = event.value
    meta = reader_meta(layer)
    if meta and layer._type_string == "labels":
        layer.events.paint.connect(lambda *_: meta.__setitem__("edited", True))


def current_file(viewer: Any) -> str | None:
    """"name (i/n)" for the stack of ours that is selected or on top and visible, else None."""
    candidates = [viewer.layers.selection.active, *reversed(list(viewer.layers))]
    for layer in candidates:
        if layer is None or not layer.visible:
            continue
        files = reader_meta(layer).get("files") or []
        if len(files) > 1 and layer.ndim == 3:
            i = min(max(int(viewer.dims.current_step[0]), 0), len(files) - 1)
            return f"{files[i]} ({i + 1}/{len(files)})"
    return None


def text_overlay(viewer: Any) -> Any:
    """napari's canvas text overlay (``viewer.canvas.overlays["text"]`` since 0.9, before that
    ``viewer.text_overlay``)."""
    canvas = getattr(viewer, "canvas", None)
    if canvas is not None and "text" in getattr(canvas, "overlays", {}):
        return canvas.overlays["text"]
    return viewer.text_overlay


def refresh(viewer: Any) -> None:
    overlay = text_overlay(viewer)
    text = current_file(viewer)
    ours = _SHOWN.get(viewer)
    if text is None:
        if ours is not None and overlay.text == ours:
            overlay.visible = False
            overlay.text = ""
        _SHOWN.pop(viewer, None)
        return
    if overlay.text and overlay.text != ours:
        return  # somebody else's text: leave it
    overlay.text = text
    overlay.position = "top_left"
    overlay.visible = True
    _SHOWN[viewer] = text


def retire_reader_layers(viewer: Any, folder: Path) -> str:
    """Take away the stack layers our reader opened from ``folder``; returns what was done, for the person.

    Docks that show one image at a time own its layers: the folder's stack under them would show
    two images as one composite and offer a second Labels layer to paint into. A labels layer
    painted into since it was read is hidden, not removed, so nothing painted there is lost.
    """
    removed, hidden = [], []
    for layer in list(viewer.layers):
        source = reader_meta(layer).get("folder")
        if not source or reader_meta(layer).get("dock") or Path(source).resolve() != Path(folder).resolve():
            continue  # not the folder's stack, or a dock's own layer
        if layer._type_string == "labels" and reader_meta(layer).get("edited"):
            layer.visible = False
            hidden.append(layer.name)
        else:
            viewer.layers.remove(layer)
            removed.append(layer.name)
    parts = []
    if removed:
        parts.append(f"closed the folder's stack layers ({', '.join(removed)})")
    if hidden:
        parts.append(f"hid {', '.join(hidden)}: it has unsaved edits, save it (File > Save Selected Layers) or delete it")
    if not parts:
        return ""
    return "This dock shows one image at a time: " + "; ".join(parts) + "."
