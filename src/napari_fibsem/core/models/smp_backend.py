"""The default backend: segmentation_models_pytorch networks (U-Net & co.) on one grayscale channel.

Weights always come from a file we read with ``weights_only=True`` or start random
(``encoder_weights=None``): nothing is downloaded, ever.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_fibsem.core.data.scaling import check_input_scale
from napari_fibsem.core.device import resolve_device
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.models.base import ModelLoadError, TiledSegmentationModel
from napari_fibsem.core.models.bundle import (
    BundleMetadata,
    describe_torch_payload,
    load_torch_payload,
    to_jsonable,
    write_bundle,
)
from napari_fibsem.core.models.formats import sniff
from napari_fibsem.core.models.normalization import Normalization

_SHOW_KEYS = 5



def build_module(
    architecture: str,
    encoder: str,
    num_classes: int,
    in_channels: int = 1,
    model_kwargs: Mapping[str, Any] | None = None,
) -> torch.nn.Module:
    """An smp network with random weights; bad names raise ValueError listing smp's options."""
    import segmentation_models_pytorch as smp

    kwargs = dict(model_kwargs or {})
    if kwargs.pop("encoder_weights", None) is not None:
        raise ValueError(
            "pretrained encoder weights would be downloaded; napari-fibsem never downloads weights"
        )
    try:
        return smp.create_model(
            architecture,
            encoder_name=encoder,
            encoder_weights=None,
            in_channels=in_channels,
            classes=num_classes,
            **kwargs,
        )
    except KeyError as e:  # smp lists the valid architectures/encoders in the KeyError
        raise ValueError(str(e.args[0]) if e.args else str(e)) from None
    except TypeError as e:
        raise ValueError(f"invalid arguments for smp {architecture!r}: {e}") from None


def check_state_dict(
    module: torch.nn.Module, state_dict: Mapping[str, Any], source: str | Path, what: str
) -> None:
    """Raise :class:`ModelLoadError` naming ``source`` and the first mismatching keys, before loading.

    torch's own ``load_state_dict`` error is a wall of hundreds of keys; the first few plus the
    counts say enough to tell "wrong encoder" from "wrong number of classes".
    """
    expected = module.state_dict()
    bad_values = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and isinstance(state_dict[k], torch.Tensor) and state_dict[k].shape != v.shape
    ]
    problems = []
    for label, items in (
        ("non-tensor values", bad_values),
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if items:
            more = f" (+{len(items) - _SHOW_KEYS} more)" if len(items) > _SHOW_KEYS else ""
            problems.append(f"{len(items)} {label}: {items[:_SHOW_KEYS]}{more}")
    if problems:
        raise ModelLoadError(f"{source}: weights do not match {what}; " + "; ".join(problems))


def _version(t: torch.Tensor) -> int:
    try:
        return int(t._version)
    except RuntimeError:  # inference tensors (made under torch.inference_mode) keep no counter
        return -1


def _module_stride(module: torch.nn.Module) -> int:
    encoder = getattr(module, "encoder", None)
    stride = getattr(encoder, "output_stride", None)
    return int(stride) if isinstance(stride, int) and stride > 0 else 32


class SmpModel(TiledSegmentationModel):
    """An smp network plus its class map and normalisation; see :class:`TiledSegmentationModel` for predict."""

    backend = "smp"

    def __init__(
        self,
        module: torch.nn.Module,
        metadata: BundleMetadata,
        *,
        device: str | torch.device | None = None,
        tile_size: int = 2048,
        tile_overlap: float = 0.25,
        batch_size: int = 4,
        channels_last: bool | None = None,
        optimize: bool | None = None,
        winograd: bool | None = None,
        bands: bool | None = None,
    ) -> None:
        self.metadata = metadata
        self.class_map = metadata.class_map
        self.normalization = metadata.normalization
        self.input_scale = metadata.input_scale
        self.tile_size = int(tile_size)
        self.tile_overlap = float(tile_overlap)
        self.batch_size = int(batch_size)
        self.stride = _module_stride(module)
        self._module = module
        self._channels_last_option = channels_last
        self._optimize_option = optimize
        self._winograd_option = winograd
        self._bands_option = bands
        self._fused: torch.nn.Module | None = None
        self._fused_key: tuple | None = None
        self._device = torch.device("cpu")
        self.to(device)

    # -- properties -----------------------------------------------------------------------------
    @property
    def torch_module(self) -> torch.nn.Module:
        return self._module

    @property
    def device(self) -> str:
        return str(self._device)

    @property
    def architecture(self) -> str:
        return self.metadata.architecture

    @property
    def encoder(self) -> str:
        return self.metadata.encoder

    def __repr__(self) -> str:
        return (
            f"SmpModel({self.architecture}/{self.encoder}, {self.num_classes} classes, "
            f"device={self.device}, normalization={self.normalization.mode}"
            + (f", input_scale={self.input_scale:g}" if self.input_scale != 1.0 else "")
            + ")"
        )

    def to(self, device: str | torch.device | None) -> SmpModel:
        """Move to ``device`` (None: CUDA if available). Channels-last by default on CPU, where oneDNN
        convolutions are faster with it; so is the optimised inference copy (see ``_infer``)."""
        self._device = resolve_device(device)
        on_cpu = self._device.type == "cpu"

        def choice(option: bool | None) -> bool:  # unset options follow the device
            return on_cpu if option is None else bool(option)

        self._channels_last = choice(self._channels_last_option)
        self._optimize = choice(self._optimize_option)
        self._winograd = self._optimize and choice(self._winograd_option)
        self._bands = self._optimize and choice(self._bands_option)
        self._fused = None
        fmt = torch.channels_last if self._channels_last else torch.contiguous_format
        self._module.to(device=self._device, memory_format=fmt)
        return self

    # -- inference ------------------------------------------------------------------------------
    def _weights_key(self) -> tuple:
        """Changes whenever a parameter or buffer is replaced, moved or updated in place (training)."""
        tensors = (*self._module.parameters(), *self._module.buffers())
        return tuple((id(t), t.data_ptr(), _version(t)) for t in tensors)

    def _inference_net(self) -> torch.nn.Module:
        """An inference-only copy of the network (BatchNorm folded, polyphase U-Net decoder, on CPU
        Winograd for the wide 3x3 convolutions and the full-resolution end in bands; see
        :func:`~napari_fibsem.core.models.fast_cpu.inference_module`), rebuilt when the weights change.

        Building it costs well under a second once per set of weights; ``benchmarks/inference.py``
        measures what each rewrite saves.
        """
        key = self._weights_key()
        if self._fused is None or self._fused_key != key:
            from napari_fibsem.core.models.fast_cpu import inference_module

            fmt = torch.channels_last if self._channels_last else torch.contiguous_format
            fused = inference_module(self._module, winograd=self._winograd, bands=self._bands)
            self._fused = fused.to(device=self._device, memory_format=fmt)
            self._fused_key = key
        return self._fused

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        module = self._module
        was_training = module.training
        module.eval()
        try:
            net = self._inference_net() if self._optimize else module
            with torch.inference_mode():
                x = torch.from_numpy(batch).to(self._device)
                in_ch = self.metadata.in_channels
                if in_ch != 1:
                    x = x.expand(-1, in_ch, -1, -1)
                if self._channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                if hasattr(net, "probabilities"):  # BandedUnet: softmax per band, already NCHW
                    probs = net.probabilities(x).float()
                else:
                    probs = torch.softmax(net(x).float(), dim=1)
                return probs.contiguous().cpu().numpy()
        finally:
            module.train(was_training)

    # -- persistence ----------------------------------------------------------------------------
    def current_metadata(
        self, training_config: Mapping[str, Any] | Any | None = None, metrics: Mapping[str, Any] | None = None
    ) -> BundleMetadata:
        """Metadata as it would be saved now (class map and normalisation as currently set)."""
        config = to_jsonable(training_config, "training config") if training_config is not None else {}
        if not isinstance(config, dict):
            raise ValueError(
                f"training config must be a mapping (or pydantic model), got {type(training_config).__name__}"
            )
        fresh = BundleMetadata(class_map=self.class_map)  # new created_at / package_version
        return dataclasses.replace(
            self.metadata,
            class_map=self.class_map,
            normalization=self.normalization,
            input_scale=check_input_scale(self.input_scale),
            training_config=config,
            metrics=to_jsonable(dict(metrics), "metrics") if metrics is not None else {},
            created_at=fresh.created_at,
            package_version=fresh.package_version,
            source_format="bundle",
        )

    def save(
        self,
        path: str | Path,
        *,
        training_config: Mapping[str, Any] | Any | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write a checkpoint bundle atomically; returns ``path``."""
        meta = self.current_metadata(training_config, metrics)
        if meta.num_classes != self.metadata.num_classes:
            raise ValueError(
                f"class map has {meta.num_classes} classes but the network outputs {self.metadata.num_classes}"
            )
        return write_bundle(path, meta, self._module.state_dict())

    @classmethod
    def from_metadata(
        cls,
        metadata: BundleMetadata,
        state_dict: Mapping[str, Any],
        *,
        source: str | Path = "<memory>",
        device: str | torch.device | None = None,
        **options: Any,
    ) -> SmpModel:
        """Build the network ``metadata`` describes and load ``state_dict`` into it (checked first)."""
        if metadata.backend != "smp":
            raise ModelLoadError(f"{source}: bundle is for backend {metadata.backend!r}, not 'smp'")
        what = (
            f"{metadata.architecture} with encoder {metadata.encoder!r}, {metadata.in_channels} input "
            f"channel(s) and {metadata.num_classes} classes"
        )
        try:
            module = build_module(
                metadata.architecture,
                metadata.encoder,
                metadata.num_classes,
                metadata.in_channels,
                metadata.model_kwargs,
            )
        except ValueError as e:
            raise ModelLoadError(f"{source}: cannot build {what}: {e}") from None
        check_state_dict(module, state_dict, source, what)
        module.load_state_dict(state_dict, strict=True)
        metadata = dataclasses.replace(metadata, architecture=type(module).__name__)
        return cls(module, metadata, device=device, **options)

    @classmethod
    def from_payload(
        cls,
        payload: Mapping[str, Any],
        *,
        source: str | Path = "<memory>",
        device: str | torch.device | None = None,
        **options: Any,
    ) -> SmpModel:
        """From an already loaded bundle payload or OpenFIBSEM dict."""
        metadata, state_dict = describe_torch_payload(payload, source)
        return cls.from_metadata(metadata, state_dict, source=source, device=device, **options)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None, **options: Any) -> SmpModel:
        """Load a bundle or OpenFIBSEM checkpoint file (never unpickles code, never downloads)."""
        path = Path(path)
        kind = sniff(path)
        if kind != "torch":
            raise ModelLoadError(
                f"{path}: this is an {kind} model, not a torch checkpoint; use backend {kind!r}"
            )
        return cls.from_payload(load_torch_payload(path), source=path, device=device, **options)


def create_model(
    architecture: str = "Unet",
    encoder: str = "resnet34",
    class_map: ClassMap | None = None,
    normalization: Normalization | None = None,
    *,
    in_channels: int = 1,
    input_scale: float = 1.0,
    device: str | torch.device | None = None,
    tile_size: int = 2048,
    tile_overlap: float = 0.25,
    batch_size: int = 4,
    channels_last: bool | None = None,
    optimize: bool | None = None,
    winograd: bool | None = None,
    bands: bool | None = None,
    **model_kwargs: Any,
) -> SmpModel:
    """A new smp model with random weights (for training); ``model_kwargs`` go to the smp constructor.

    ``class_map`` defaults to the AutoLamella classes and ``normalization`` to OpenFIBSEM's
    ``image / dtype max``; both are saved with the weights, and so is ``input_scale`` (the model
    sees images resized by it; masks come back at full size). ``optimize`` (default: on CPU)
    predicts with a BatchNorm-folded, polyphase copy of the network (same results up to float
    rounding; it holds a second copy of the weights); ``winograd`` (default: on CPU, with
    ``optimize``) computes its wide 3x3 convolutions with Winograd's F(4x4, 3x3), and ``bands``
    (the same default) runs a U-Net's full-resolution end and the softmax in bands of rows.
    """
    class_map = class_map if class_map is not None else ClassMap.default()
    module = build_module(architecture, encoder, class_map.num_classes, in_channels, model_kwargs)
    metadata = BundleMetadata(
        class_map=class_map,
        architecture=type(module).__name__,
        encoder=encoder,
        normalization=normalization if normalization is not None else Normalization(),
        model_kwargs=to_jsonable(model_kwargs, "model arguments"),
        in_channels=in_channels,
        input_scale=check_input_scale(input_scale),
    )
    return SmpModel(
        module,
        metadata,
        device=device,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        batch_size=batch_size,
        channels_last=channels_last,
        optimize=optimize,
        winograd=winograd,
        bands=bands,
    )
