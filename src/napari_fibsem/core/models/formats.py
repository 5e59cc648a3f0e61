"""Recognise a model file or folder by its content, never by its name.

OpenFIBSEM picks a backend from substrings of the checkpoint name ("onnx" in the name means
ONNX), so a renamed file loads with the wrong code. Here the bytes decide: a zip archive or pickle
is a torch checkpoint (then its keys say bundle vs OpenFIBSEM dict), a protobuf with ONNX's
``ModelProto`` layout is ONNX, and a folder with ``plans.json``/``dataset.json`` is nnU-Net.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Literal

from napari_fibsem.core.models.base import ModelLoadError

FileKind = Literal["torch", "onnx", "nnunet"]
ModelFormat = Literal["bundle", "openfibsem", "onnx", "nnunet"]

ZIP_MAGIC = b"PK\x03\x04"
NNUNET_MARKERS = ("plans.json", "dataset.json")

# ModelProto field number -> protobuf wire type (0 varint, 2 length-delimited).
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_ONNX_IR_VERSION, _ONNX_GRAPH = 1, 7
_MAX_FIELDS = 100_000

EXPECTED = (
    "expected a napari-fibsem checkpoint bundle, an OpenFIBSEM checkpoint dict (torch), "
    "an ONNX model, or an nnU-Net results folder (with plans.json and dataset.json)"
)


def _read_varint(fh: BinaryIO) -> int | None:
    value = 0
    for shift in range(0, 70, 7):
        b = fh.read(1)
        if not b:
            return None
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
    return None


def looks_like_onnx(path: str | Path) -> bool:
    """True if the whole file parses as top-level ONNX ``ModelProto`` fields including ir_version and graph.

    Only tags and lengths are read (large tensors are skipped with ``seek``), so this is cheap even
    for big models and needs no ``onnx`` package.
    """
    path = Path(path)
    size = path.stat().st_size
    seen: set[int] = set()
    with open(path, "rb") as fh:
        for _ in range(_MAX_FIELDS):
            if fh.tell() >= size:
                return _ONNX_IR_VERSION in seen and _ONNX_GRAPH in seen
            tag = _read_varint(fh)
            if tag is None:
                return False
            field, wire = tag >> 3, tag & 7
            if _ONNX_FIELDS.get(field) != wire:
                return False
            if wire == 0:
                if _read_varint(fh) is None:
                    return False
            else:
                length = _read_varint(fh)
                if length is None or fh.tell() + length > size:
                    return False
                fh.seek(length, 1)
            seen.add(field)
    return False


def is_nnunet_folder(path: str | Path) -> bool:
    """An nnU-Net results (trainer) folder: it holds ``plans.json`` or ``dataset.json``."""
    path = Path(path)
    return path.is_dir() and any((path / name).is_file() for name in NNUNET_MARKERS)


def sniff(path: str | Path) -> FileKind:
    """Which container ``path`` is, from its first bytes or folder content; else :class:`ModelLoadError`."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file or folder")
    if path.is_dir():
        if is_nnunet_folder(path):
            return "nnunet"
        raise ModelLoadError(
            f"{path}: a folder, but not an nnU-Net results folder (no {' or '.join(NNUNET_MARKERS)})"
        )
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read ({e.strerror})") from None
    if not head:
        raise ModelLoadError(f"{path}: the file is empty; {EXPECTED}")
    if head.startswith(ZIP_MAGIC):
        return "torch"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:  # pickle protocol 2-5: legacy torch.save
        return "torch"
    if looks_like_onnx(path):
        return "onnx"
    raise ModelLoadError(f"{path}: not a recognised model file; {EXPECTED}")


def detect_format(path: str | Path) -> ModelFormat:
    """The model format of ``path`` by content (torch files are loaded, weights_only, to look at their keys)."""
    kind = sniff(path)
    if kind != "torch":
        return kind
    from napari_fibsem.core.models.bundle import describe_torch_payload, load_torch_payload

    meta, _ = describe_torch_payload(load_torch_payload(path), path)
    return "openfibsem" if meta.source_format == "openfibsem" else "bundle"


def detect_backend(path: str | Path) -> str:
    """The registry key of the backend that loads ``path`` (``smp``, ``onnx`` or ``nnunet``)."""
    kind = sniff(path)
    if kind != "torch":
        return kind
    from napari_fibsem.core.models.bundle import describe_torch_payload, load_torch_payload

    meta, _ = describe_torch_payload(load_torch_payload(path), path)
    return meta.backend
