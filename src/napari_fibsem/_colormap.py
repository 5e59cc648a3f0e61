"""napari-ready colours for a class map (outside core: the shape is napari's)."""

from __future__ import annotations

from napari_fibsem.core.io.classes import ClassMap


def labels_colormap(class_map: ClassMap) -> dict:
    """A ``{label: colour}`` dict that napari's Labels layer turns into a direct colormap.

    Background (id 0) and ids outside the map are transparent so the image stays visible.
    """
    cmap: dict = {None: "transparent"}
    for cid, info in class_map.classes.items():
        cmap[cid] = "transparent" if cid == 0 else info.color
    return cmap


def labels_layer_kwargs(class_map: ClassMap, name: str) -> dict:
    """Keyword arguments for a Labels layer showing ``class_map``'s colours and names."""
    return {
        "name": name,
        "colormap": labels_colormap(class_map),
        "opacity": 0.5,
        "metadata": {"class_map": class_map.to_dict()},
    }
