"""Reading an ONNX file for the ``onnx`` backend: its graph's inputs/outputs and our metadata.

Everything here works on the protobuf alone, before any runtime is started, so a file that cannot
be a napari-fibsem segmentation model (wrong input shape or type, corrupt, unreadable metadata) is
refused with one clear :class:`ModelLoadError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from napari_fibsem.core._optional import require
from napari_fibsem.core.models.base import ModelLoadError
from napari_fibsem.core.models.formats import looks_like_onnx

OutputKind = Literal["logits", "probs"]
METADATA_KEY = "napari_fibsem"
"""The ``metadata_props`` key under which :func:`~.export.export_onnx` stores our JSON."""
_FLOAT = 1  # onnx.TensorProto.FLOAT

Dims = list[int | str | None]


def _dims(value_info: Any) -> Dims | None:
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    out: Dims = []
    for d in tensor.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        else:
            out.append(d.dim_param or None)
    return out


def graph_output_kind(proto: Any, output_name: str) -> OutputKind:
    """``probs`` when the graph's output comes straight from a channel Softmax, else ``logits``."""
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13)
    for node in proto.graph.node:
        if output_name in node.output and node.op_type == "Softmax":
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1 if opset < 13 else -1)
            return "probs" if axis in (1, -3) else "logits"
    return "logits"


def read_proto(path: Path) -> Any:
    """The file's ``ModelProto`` (weights kept external); corrupt or non-ONNX files are refused."""
    onnx = require("onnx", "onnx")
    if not looks_like_onnx(path):
        raise ModelLoadError(f"{path}: not a readable ONNX model (truncated, corrupt, or another format)")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelLoadError(f"{path}: corrupt ONNX model ({e})") from None


def our_metadata(proto: Any, path: Path) -> dict[str, Any] | None:
    """The JSON our exporter stored under :data:`METADATA_KEY`; None for other people's files."""
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            try:
                data = json.loads(entry.value)
            except ValueError as e:
                raise ModelLoadError(
                    f"{path}: unreadable napari-fibsem metadata in the ONNX file ({e})"
                ) from None
            if not isinstance(data, dict):
                raise ModelLoadError(f"{path}: napari-fibsem metadata in the ONNX file is not a mapping")
            return data
    return None


def check_io(proto: Any, path: Path) -> tuple[Dims, Dims]:
    """Input and output dims; a graph that does not take ``N x 1 x H x W`` float32 is refused."""
    graph = proto.graph
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise ModelLoadError(
            f"{path}: the ONNX graph has {len(inputs)} inputs {[i.name for i in inputs]}; "
            "napari-fibsem needs one image input of shape N x 1 x H x W"
        )
    if not graph.output:
        raise ModelLoadError(f"{path}: the ONNX graph has no output")
    inp = inputs[0]
    elem = inp.type.tensor_type.elem_type
    in_dims = _dims(inp) or [None, 1, None, None]
    if len(in_dims) != 4 or (isinstance(in_dims[1], int) and in_dims[1] != 1):
        shown = "(" + ", ".join("?" if d is None else str(d) for d in in_dims) + ")"
        raise ModelLoadError(
            f"{path}: the model's input {inp.name!r} has shape {shown}; napari-fibsem feeds 1-channel "
            "grayscale images as N x 1 x H x W (re-export the model with in_channels=1)"
        )
    if elem != _FLOAT:
        raise ModelLoadError(f"{path}: the model's input {inp.name!r} is not float32 (ONNX type {elem})")
    out_dims = _dims(graph.output[0])
    if out_dims is not None and len(out_dims) != 4:
        raise ModelLoadError(
            f"{path}: the model's output has {len(out_dims)} dimensions; expected N x C x H x W class scores"
        )
    return in_dims, out_dims or [None] * 4


def fixed_input(in_dims: Dims) -> tuple[int | None, tuple[int, int] | None]:
    """The batch size and ``(H, W)`` the graph was exported for; None where it takes any."""
    n, _, h, w = in_dims
    fixed_batch = n if isinstance(n, int) and n > 0 else None
    fixed_size = (h, w) if isinstance(h, int) and isinstance(w, int) else None
    return fixed_batch, fixed_size


def declared_classes(out_dims: Dims) -> int | None:
    """Output channels as the graph declares them; None when it leaves them open."""
    nc = out_dims[1]
    return nc if isinstance(nc, int) and nc > 0 else None
