"""``load_model``: one entry point for every model file the plugin accepts.

The backend is given explicitly or recognised from the content (see :mod:`.formats`); the
registry then imports just that backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napari_fibsem.core.models.base import ModelLoadError, SegmentationModel
from napari_fibsem.core.models.formats import sniff
from napari_fibsem.core.models.registry import BackendUnavailableError, get_backend


def load_model(
    path_or_bundle: str | Path | Mapping[str, Any],
    backend: str | None = None,
    device: Any = None,
    **options: Any,
) -> SegmentationModel:
    """Load a segmentation model from a file, an nnU-Net folder or an in-memory checkpoint dict.

    ``backend=None`` recognises the format by content: a napari-fibsem bundle or an OpenFIBSEM
    ``{"checkpoint", "encoder", "nc"}`` dict -> ``smp``; an ONNX protobuf -> ``onnx``; a folder with
    ``plans.json``/``dataset.json`` -> ``nnunet``. ``device=None`` picks CUDA when available.
    ``options`` (e.g. ``tile_size``, ``batch_size``) go to the backend. Unreadable or unknown input
    raises :class:`~napari_fibsem.core.models.base.ModelLoadError` naming it.
    """
    if isinstance(path_or_bundle, Mapping):
        cls = get_backend(backend or "smp")
        if not hasattr(cls, "from_payload"):
            raise TypeError(f"backend {backend!r} cannot load an in-memory checkpoint; pass a path")
        return cls.from_payload(path_or_bundle, device=device, **options)

    path = Path(path_or_bundle)
    if backend is None:
        kind = sniff(path)
        if kind == "torch":
            from napari_fibsem.core.models.bundle import describe_torch_payload, load_torch_payload

            metadata, state_dict = describe_torch_payload(load_torch_payload(path), path)
            if metadata.backend == "events":
                raise ModelLoadError(
                    f"{path}: an event-detection model (napari-fibsem events train), not a segmentation "
                    "model; use it with `napari-fibsem events predict` or the Detect events widget"
                )
            cls = _backend_for(metadata.backend, path)
            if hasattr(cls, "from_metadata"):
                return cls.from_metadata(metadata, state_dict, source=path, device=device, **options)
            return cls.load(path, device=device, **options)
        backend = kind
    cls = _backend_for(backend, path)
    return cls.load(path, device=device, **options)


def _backend_for(name: str, path: Path) -> type:
    try:
        return get_backend(name)
    except BackendUnavailableError as e:
        raise BackendUnavailableError(f"{path}: content recognised as backend {name!r}, but {e}") from e
