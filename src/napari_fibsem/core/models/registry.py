"""Segmentation backends by name, imported only when used.

Values are ``"module:Class"`` strings so that listing the backends imports nothing (no torch,
onnxruntime or nnunetv2 at start-up). A backend class provides
``load(path, device=None) -> SegmentationModel`` as a classmethod; its optional dependencies are
imported inside it through :func:`napari_fibsem.core._optional.require`.
"""

from __future__ import annotations

import importlib

from napari_fibsem.core.errors import FibsemError

SEGMENTATION_BACKENDS: dict[str, str] = {
    "smp": "napari_fibsem.core.models.smp_backend:SmpModel",
    "onnx": "napari_fibsem.core.models.onnx_backend:OnnxModel",
    "nnunet": "napari_fibsem.core.models.nnunet_backend:NnUNetModel",
}


class UnknownBackendError(FibsemError, KeyError):
    """No backend of that name; the message lists the registered ones."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class BackendUnavailableError(FibsemError, ImportError):
    """The backend is registered but its module is not part of this installation."""


def backend_names() -> list[str]:
    return sorted(SEGMENTATION_BACKENDS)


def get_backend(name: str) -> type:
    """The class registered as ``name``, imported now.

    Raises :class:`UnknownBackendError` listing the options for an unknown name,
    :class:`BackendUnavailableError` if the backend's module is absent, and the backend's own
    ImportError (with the ``pip install napari-fibsem[extra]`` hint) if a dependency is missing.
    """
    try:
        target = SEGMENTATION_BACKENDS[name]
    except (KeyError, TypeError):
        raise UnknownBackendError(
            f"unknown segmentation backend {name!r}; available backends: {backend_names()}"
        ) from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise BackendUnavailableError(
                f"segmentation backend {name!r} is registered but its module {module_name!r} is not "
                "available in this installation of napari-fibsem"
            ) from e
        raise
    try:
        return getattr(module, attr)
    except AttributeError:
        raise BackendUnavailableError(
            f"segmentation backend {name!r}: {module_name} has no {attr!r}"
        ) from None
