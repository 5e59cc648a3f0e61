"""The beam images in the viewer: one layer per beam, scaled to metres, side by side, marked stale.

Each beam's newest image goes into one Image layer (``layer_name``; found again by its
``fibsem_beam`` metadata, so a renamed layer is still the beam's), scaled by its pixel size so
world units are metres; with both beams acquired the ion image sits to the right of the
electron image.

An image is *stale* when the stage is no longer where it was when the image was taken: the image's
metadata records the stage position at acquisition (``microscope_state.stage``) and every stage
readout is compared with it. A difference of more than half a pixel in x, y or z (or 0.1 mrad in
rotation or tilt) marks it, as does a stage that cannot be read: the layer is renamed
``"ion beam (stale)"`` and the dock shows why. Comparing positions rather than
counting moves catches every move: the dock's buttons, centring, restored states, and a move
made elsewhere (a script, the vendor software) that the periodic readout sees.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_fibsem.core.microscope import BeamType, ImageSettings, MicroscopeError, StagePosition, from_dict

if TYPE_CHECKING:
    import napari

BEAMS = ("electron", "ion")
BEAM_KEY = "fibsem_beam"  # layer metadata: which beam's image the layer holds
STALE_SUFFIX = " (stale)"  # short: the layer list elides long names; the dock says why
ANGLE_TOLERANCE = 1e-4  # rad: a rotation or tilt change larger than this makes an image stale
_GAP = 0.05  # the ion image sits this fraction of the electron image's width to its right


def metre_units() -> dict[str, Any]:
    """``add_image`` / ``add_shapes`` keyword giving a layer metre units (napari >= 0.6; none before)."""
    from napari.layers import Layer

    return {"units": ("m", "m")} if hasattr(Layer, "units") else {}


def layer_name(beam: str) -> str:
    """The name of ``beam``'s image layer while its image is current."""
    return f"{beam} beam"


def beam_layer(viewer: napari.viewer.Viewer, beam: str) -> Any:
    """The layer holding ``beam``'s image, or None."""
    return next((la for la in viewer.layers if la.metadata.get(BEAM_KEY) == beam), None)


def image_stage(image: Any) -> StagePosition | None:
    """The stage position recorded in ``image``'s metadata when it was acquired."""
    data = ((image.metadata.extra or {}).get("microscope_state") or {}).get("stage")
    if not data:
        return None
    try:
        return from_dict(StagePosition, data)
    except (TypeError, ValueError):
        return None


def settings_of(image: Any) -> ImageSettings | None:
    """The settings ``image`` was acquired with (from its metadata), without its save path."""
    data = (image.metadata.extra or {}).get("image_settings")
    if not data:
        return None
    try:
        s = from_dict(ImageSettings, data)
    except (TypeError, ValueError):
        return None
    return ImageSettings(s.resolution, s.dwell_time, s.hfw, s.beam, s.autocontrast)


def staleness(image: Any, stage: StagePosition | MicroscopeError | None) -> str | None:
    """Why ``image`` no longer shows what is under the beam at ``stage`` (None: it does, or no
    readout has been made yet)."""
    if stage is None:
        return None
    if isinstance(stage, MicroscopeError):
        return "the stage position cannot be read"
    then = image_stage(image)
    if then is None:
        return "it records no stage position"
    tolerance = max(float(image.metadata.pixel_size or 0.0) / 2, 1e-9)
    if not then.is_close(stage, tol=tolerance, atol_rad=ANGLE_TOLERANCE):
        return "the stage moved since it was taken"
    return None


def mark_stale(viewer: napari.viewer.Viewer, stage: StagePosition | MicroscopeError | None) -> dict[str, str]:
    """Rename each beam layer by whether its image is stale at ``stage``; {beam: reason} of the stale."""
    reasons: dict[str, str] = {}
    for beam in BEAMS:
        layer = beam_layer(viewer, beam)
        if layer is None:
            continue
        reason = staleness(layer.metadata["fibsem_image"], stage)
        _rename(layer, layer_name(beam) + (STALE_SUFFIX if reason else ""))
        if reason:
            reasons[beam] = reason
    return reasons


def _rename(layer: Any, name: str) -> None:
    """Rename unless the name already is ``name`` (perhaps with the " [1]" napari adds to keep
    names unique)."""
    if re.sub(r" \[\d+\]$", "", layer.name) != name:
        layer.name = name


def show_image(
    viewer: napari.viewer.Viewer, image: Any, on_double_click: Callable[..., None]
) -> tuple[Any, bool]:
    """Put ``image`` into its beam's layer (made if missing), scaled to metres and arranged;
    returns the layer and whether the view should be reset (a new layer, size or position)."""
    beam = image.metadata.beam_type
    ps = float(image.metadata.pixel_size)
    layer = beam_layer(viewer, beam)
    regrid = layer is None
    if layer is None:
        layer = viewer.add_image(
            image.data,
            name=layer_name(beam),
            scale=(ps, ps),
            metadata={"fibsem_image": image, BEAM_KEY: beam},
            colormap="gray",
            **metre_units(),
        )
        layer.mouse_double_click_callbacks.append(on_double_click)
        show_scale_bar(viewer)
    else:
        same_scale = np.allclose(layer.scale[-2:], ps, rtol=1e-9, atol=0)
        regrid = layer.data.shape != image.data.shape or not same_scale
        layer.data = image.data
        layer.scale = (ps, ps)
        layer.metadata["fibsem_image"] = image
        _rename(layer, layer_name(beam))  # fresh: no longer stale
    return layer, arrange(viewer) or regrid


def arrange(viewer: napari.viewer.Viewer) -> bool:
    """Put the ion image to the right of the electron image (when both exist); True if it moved."""
    ion, electron = beam_layer(viewer, BeamType.ION.value), beam_layer(viewer, BeamType.ELECTRON.value)
    if ion is None:
        return False
    x = 0.0
    if electron is not None:
        x = float(electron.translate[-1] + electron.data.shape[-1] * electron.scale[-1] * (1 + _GAP))
    if np.isclose(ion.translate[-1], x, rtol=1e-9, atol=0.0):
        return False
    ion.translate = (0.0, x)
    return True


def show_scale_bar(viewer: napari.viewer.Viewer) -> None:
    """Show the scale bar in metres (napari >= 0.6 takes the unit from the layers)."""
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    if overlays is not None and "scale_bar" in overlays:
        bar = overlays["scale_bar"]
    else:
        bar = viewer.scale_bar
        if not metre_units():
            bar.unit = "m"
    bar.visible = True
