"""ONNX export of an smp model with the model's metadata inside.

:func:`export_onnx` writes the network after the exact rewrites that help every runtime
(BatchNorm folded, polyphase U-Net decoder: :func:`~napari_fibsem.core.models.fast_cpu.inference_module`
without its CPU-torch-only steps), with dynamic batch/height/width and logits out, and stores the
class map, normalisation, architecture, encoder and stride as JSON in ``metadata_props``.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_fibsem.core._optional import require
from napari_fibsem.core.io.atomic import atomic_path
from napari_fibsem.core.models.bundle import BundleMetadata
from napari_fibsem.core.models.fast_cpu import inference_module
from napari_fibsem.core.models.onnx_backend import METADATA_KEY

ONNX_FORMAT_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17


class _GrayscaleLogits(nn.Module):
    """The exported graph: ``N x 1 x H x W`` in, ``N x C x H x W`` float32 logits out."""

    def __init__(self, module: nn.Module, in_channels: int) -> None:
        super().__init__()
        self.module = module
        self.in_channels = in_channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.in_channels != 1:
            image = image.expand(-1, self.in_channels, -1, -1)
        return self.module(image)


# -- ONNX export --------------------------------------------------------------------------------
def onnx_metadata(model: Any) -> dict[str, Any]:
    """The JSON stored under :data:`METADATA_KEY`: bundle metadata plus what ONNX loading needs."""
    meta: BundleMetadata = model.current_metadata()
    meta = dataclasses.replace(meta, backend="onnx", source_format="onnx")
    data = meta.to_dict()
    data.update(
        onnx_format_version=ONNX_FORMAT_VERSION,
        stride=int(model.stride),
        output="logits",
        input_name=INPUT_NAME,
        source_architecture=model.metadata.architecture,
    )
    return data


def export_onnx(
    model: Any,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    optimize: bool = True,
    sample_size: int | None = None,
) -> Path:
    """Write ``model`` (an :class:`~napari_fibsem.core.models.smp_backend.SmpModel`) as ONNX, atomically.

    The graph takes ``N x 1 x H x W`` float32 (normalised like the model's own input, with H and
    W multiples of the stride) and returns logits; the ONNX backend applies softmax afterwards
    (ONNX Runtime's channel softmax is ~15% of a resnet34 U-Net's time, numpy's ~1%). Batch,
    height and width are dynamic. ``optimize`` exports :func:`inference_module`'s rewrite.
    ``load_model(path)`` then restores the class map, normalisation and stride.
    """
    onnx = require("onnx", "onnx")
    path = Path(path)
    module = model.torch_module
    was_training = module.training
    net = inference_module(module) if optimize else copy.deepcopy(module).eval()
    module.train(was_training)
    net = net.to("cpu").to(memory_format=torch.contiguous_format)
    wrapper = _GrayscaleLogits(net, int(model.metadata.in_channels)).eval()
    size = sample_size or 2 * int(model.stride)
    sample = torch.zeros(1, 1, size, size)
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        # the TorchScript exporter is the one that needs no extra package (onnxscript); its
        # deprecation and tracer notes are not the user's concern
        warnings.simplefilter("ignore")
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                wrapper,
                (sample,),
                buffer,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
                opset_version=int(opset),
                do_constant_folding=True,
                dynamo=False,
            )
    proto = onnx.load_from_string(buffer.getvalue())
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(onnx_metadata(model))
    proto.producer_name = "napari-fibsem"
    proto.doc_string = (
        f"{model.metadata.architecture}/{model.metadata.encoder} segmentation, "
        f"classes {model.class_map.names}; input N x 1 x H x W normalised, output logits"
    )
    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return path
