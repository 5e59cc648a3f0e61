"""Checkpoint bundles: one torch zip archive holding weights and everything needed to use them.

A bare ``state_dict`` forgets the architecture, the class names and the input scaling, and the next
person guesses them wrong. A bundle is ``torch.save`` of a plain dict::

    {"napari_fibsem_bundle": 1, "metadata": {...JSON-safe...}, "state_dict": {name: tensor}}

so ``torch.load(weights_only=True)`` reads it without unpickling any code, and it is recognised by
that key (its content), never by its file name.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from napari_fibsem.core.data.scaling import check_input_scale
from napari_fibsem.core.io.atomic import atomic_path
from napari_fibsem.core.io.classes import ClassMap, ClassMapError
from napari_fibsem.core.models.base import ModelLoadError
from napari_fibsem.core.models.normalization import Normalization

BUNDLE_KEY = "napari_fibsem_bundle"
BUNDLE_FORMAT_VERSION = 1
OPENFIBSEM_KEYS = ("checkpoint", "encoder", "nc")


def package_version() -> str:
    """``napari_fibsem.__version__``, else the installed distribution's version, else ``0+unknown``."""
    try:
        from napari_fibsem import __version__

        return str(__version__)
    except (ImportError, AttributeError):
        pass
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("napari-fibsem")
    except (ImportError, PackageNotFoundError):
        return "0+unknown"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "model_dump"):  # pydantic v2 models (the training config)
        return obj.model_dump(mode="json")
    if hasattr(obj, "item") and callable(obj.item):  # 0-d torch tensors in metrics
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def to_jsonable(obj: Any, what: str = "value") -> Any:
    """A JSON round trip: what survives it also survives ``weights_only`` loading and any reader."""
    try:
        return json.loads(json.dumps(obj, default=_json_default))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} cannot be stored in a checkpoint bundle: {e}") from None


@dataclass
class BundleMetadata:
    """Everything about a model except its weights."""

    class_map: ClassMap
    architecture: str = "Unet"
    encoder: str = "resnet34"
    normalization: Normalization = field(default_factory=Normalization)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra smp constructor arguments (e.g. ``encoder_depth``, ``decoder_channels``)."""
    in_channels: int = 1
    input_scale: float = 1.0
    """Images are resized by this factor before the network sees them (0.5: half width and height)
    and the probabilities back to the full size; see :mod:`~napari_fibsem.core.data.scaling`."""
    training_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    package_version: str = field(default_factory=package_version)
    backend: str = "smp"
    source_format: str = "bundle"
    """``bundle`` for our own files, ``openfibsem`` when converted from an OpenFIBSEM dict."""

    @property
    def num_classes(self) -> int:
        return self.class_map.num_classes

    def to_dict(self) -> dict[str, Any]:
        data = {
            "backend": self.backend,
            "architecture": self.architecture,
            "encoder": self.encoder,
            "model_kwargs": self.model_kwargs,
            "in_channels": self.in_channels,
            "input_scale": self.input_scale,
            "num_classes": self.num_classes,
            "class_map": self.class_map.to_dict(),
            "normalization": self.normalization.to_dict(),
            "training_config": self.training_config,
            "metrics": self.metrics,
            "created_at": self.created_at,
            "package_version": self.package_version,
            "source_format": self.source_format,
        }
        return to_jsonable(data, "bundle metadata")

    @classmethod
    def from_dict(cls, data: object, source: str | Path = "<bundle>") -> BundleMetadata:
        """Validate stored metadata; problems raise :class:`ModelLoadError` naming ``source``."""
        if not isinstance(data, Mapping):
            raise ModelLoadError(f"{source}: bundle metadata is not a mapping")
        missing = [k for k in ("architecture", "encoder", "class_map") if k not in data]
        if missing:
            raise ModelLoadError(f"{source}: bundle metadata lacks {missing}")
        try:
            class_map = ClassMap.from_dict(data["class_map"], source=source)
            normalization = Normalization.from_dict(data.get("normalization"))
        except (ClassMapError, ValueError, TypeError) as e:
            raise ModelLoadError(f"{source}: invalid bundle metadata: {e}") from None
        stored_nc = data.get("num_classes")
        if stored_nc is not None and stored_nc != class_map.num_classes:
            raise ModelLoadError(
                f"{source}: bundle says num_classes={stored_nc} but its class map needs {class_map.num_classes}"
            )
        try:
            return cls(
                class_map=class_map,
                architecture=str(data["architecture"]),
                encoder=str(data["encoder"]),
                normalization=normalization,
                model_kwargs=dict(data.get("model_kwargs") or {}),
                in_channels=int(data.get("in_channels", 1)),
                input_scale=check_input_scale(data.get("input_scale", 1.0), "input_scale"),
                training_config=dict(data.get("training_config") or {}),
                metrics=dict(data.get("metrics") or {}),
                created_at=str(data.get("created_at", "")),
                package_version=str(data.get("package_version", "0+unknown")),
                backend=str(data.get("backend", "smp")),
                source_format=str(data.get("source_format", "bundle")),
            )
        except (TypeError, ValueError) as e:
            raise ModelLoadError(f"{source}: invalid bundle metadata: {e}") from None


def write_bundle(path: str | Path, metadata: BundleMetadata, state_dict: Mapping[str, Any]) -> Path:
    """Save atomically: a crash mid-write leaves any previous file at ``path`` untouched."""
    import torch

    path = Path(path)
    tensors = {str(k): v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    payload = {BUNDLE_KEY: BUNDLE_FORMAT_VERSION, "metadata": metadata.to_dict(), "state_dict": tensors}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def save_bundle(
    path: str | Path,
    model: Any,
    *,
    training_config: Mapping[str, Any] | Any | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Save a model (e.g. :class:`~napari_fibsem.core.models.smp_backend.SmpModel`) as a bundle."""
    return model.save(path, training_config=training_config, metrics=metrics)


# -- reading -------------------------------------------------------------------------------------
def _torch_error_detail(err: BaseException) -> str:
    """The informative line of torch's long weights_only message (e.g. which GLOBAL was blocked)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "GLOBAL" in ln or "Unsupported" in ln:
            return ln
        if ln.endswith("WeightsUnpickler error:") and i + 1 < len(lines):
            return lines[i + 1]
    return lines[0] if lines else type(err).__name__


def load_torch_payload(path: str | Path) -> object:
    """``torch.load(weights_only=True)`` with failures turned into one :class:`ModelLoadError`.

    weights_only means only tensors and plain containers are rebuilt; a pickle that asks for any
    other object (a whole ``nn.Module``, or a payload with a malicious ``__reduce__``) is refused
    before anything runs.
    """
    import torch

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _torch_error_detail(e)
        what = (
            "it holds Python objects, not just weights"
            if "GLOBAL" in detail
            else "it is corrupt or holds more than weights"
        )
        raise ModelLoadError(
            f"{path}: refused to load: {what} ({detail}). Unpickling Python objects could run "
            "arbitrary code, so napari-fibsem only reads tensors and plain containers "
            "(torch.load weights_only=True). Save the model's state_dict in a checkpoint bundle instead."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as e:
        detail = str(e).split(". ")[0].splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(f"{path}: truncated or corrupt torch checkpoint ({detail})") from None


def split_bundle(payload: Mapping[str, Any], source: str | Path = "<bundle>") -> tuple[BundleMetadata, dict]:
    """Metadata and state_dict of a loaded bundle payload, validated."""
    version = payload.get(BUNDLE_KEY)
    if not isinstance(version, int) or version > BUNDLE_FORMAT_VERSION:
        raise ModelLoadError(
            f"{source}: bundle format {version!r} is newer than this napari-fibsem understands "
            f"(<= {BUNDLE_FORMAT_VERSION}); upgrade napari-fibsem"
        )
    metadata = BundleMetadata.from_dict(payload.get("metadata"), source=source)
    state_dict = payload.get("state_dict")
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise ModelLoadError(f"{source}: bundle has no weights ('state_dict' missing or empty)")
    return metadata, dict(state_dict)


def read_bundle(path: str | Path) -> tuple[BundleMetadata, dict]:
    """Load a bundle file's metadata and weights (CPU tensors) without building a model."""
    payload = load_torch_payload(path)
    if not isinstance(payload, Mapping) or BUNDLE_KEY not in payload:
        raise ModelLoadError(f"{path}: not a napari-fibsem checkpoint bundle (no {BUNDLE_KEY!r} key)")
    return split_bundle(payload, source=path)


def openfibsem_class_map(nc: int) -> ClassMap:
    """AutoLamella's six classes for ``nc == 6`` (what OpenFIBSEM's models predict), else generic names."""
    if nc == 6:
        return ClassMap.default()
    return ClassMap.from_names(["background", *(f"class_{i}" for i in range(1, nc))])


def openfibsem_metadata(payload: Mapping[str, Any], source: str | Path) -> tuple[BundleMetadata, dict]:
    """Metadata for OpenFIBSEM's ``{"checkpoint": state_dict, "encoder": str, "nc": int}`` dicts.

    OpenFIBSEM builds ``smp.Unet(encoder, in_channels=1, classes=nc)`` and feeds ``image / 255`` with
    no mean/std: that is ``Normalization("fixed")`` with the defaults.
    """
    missing = [k for k in OPENFIBSEM_KEYS if k not in payload]
    if missing:
        raise ModelLoadError(f"{source}: OpenFIBSEM checkpoint dict lacks {missing}")
    state_dict, encoder, nc = payload["checkpoint"], payload["encoder"], payload["nc"]
    if (
        not isinstance(state_dict, Mapping)
        or not isinstance(encoder, str)
        or isinstance(nc, bool)
        or not isinstance(nc, int)
    ):
        raise ModelLoadError(
            f"{source}: OpenFIBSEM checkpoint needs 'checkpoint' (a state_dict), 'encoder' (str) and 'nc' (int)"
        )
    if not 1 <= nc <= 256:
        raise ModelLoadError(f"{source}: OpenFIBSEM checkpoint has nc={nc}; expected 1..256 classes")
    meta = BundleMetadata(
        class_map=openfibsem_class_map(nc),
        architecture="Unet",
        encoder=encoder,
        normalization=Normalization(mode="fixed", mean=0.0, std=1.0),
        created_at="",
        package_version="",
        source_format="openfibsem",
    )
    return meta, dict(state_dict)


def describe_torch_payload(payload: object, source: str | Path) -> tuple[BundleMetadata, dict]:
    """Recognise a loaded torch payload (bundle or OpenFIBSEM dict) or explain what is missing."""
    import torch

    if isinstance(payload, Mapping):
        if BUNDLE_KEY in payload:
            return split_bundle(payload, source)
        if "checkpoint" in payload and ("encoder" in payload or "nc" in payload):
            return openfibsem_metadata(payload, source)
        if payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            raise ModelLoadError(
                f"{source}: a bare state_dict with {len(payload)} tensors but no metadata: the "
                "architecture, encoder, class map (number of classes) and input normalisation are "
                "missing. Build the model with napari_fibsem.core.models.create_model(...), load these "
                "weights into model.torch_module and save it with model.save(path); or save an "
                "OpenFIBSEM dict {'checkpoint': state_dict, 'encoder': 'resnet34', 'nc': n}."
            )
        keys = sorted(map(str, payload))[:10]
        raise ModelLoadError(
            f"{source}: torch checkpoint of an unknown layout (top-level keys {keys}); expected a "
            f"napari-fibsem bundle ({BUNDLE_KEY!r}) or an OpenFIBSEM dict {list(OPENFIBSEM_KEYS)}"
        )
    raise ModelLoadError(
        f"{source}: torch checkpoint holds a {type(payload).__name__}, not a napari-fibsem bundle "
        "or an OpenFIBSEM checkpoint dict"
    )
