"""The ``onnx`` backend: ONNX files run by ONNX Runtime or OpenVINO, behind the usual predict.

Our own exports (:func:`napari_fibsem.core.models.export.export_onnx`) carry their class map,
normalisation and stride as JSON in ``metadata_props``, so they predict exactly like the torch
model they came from. Other people's exports (OpenFIBSEM's ``autolamella-mega.onnx`` among them:
``1 x 1 x 1024 x 1536`` input, logits out, ``image / 255``) load with defaults: the AutoLamella
class map for 6 outputs, generic names otherwise, and "fixed" normalisation; a file whose
graph is not ``N x 1 x H x W`` in is refused with one clear message before any runtime sees it.

Softmax is applied here when the graph ends in logits (numpy takes ~1% of a U-Net's time for it,
ONNX Runtime's channel softmax ~15%). Reading and checking the file itself is ``onnx_file``'s job.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_fibsem.core._optional import require
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.models.base import ModelLoadError, TiledSegmentationModel
from napari_fibsem.core.models.bundle import BundleMetadata, openfibsem_class_map
from napari_fibsem.core.models.normalization import Normalization
from napari_fibsem.core.models.onnx_file import (
    METADATA_KEY,
    OutputKind,
    check_io,
    declared_classes,
    fixed_input,
    graph_output_kind,
    our_metadata,
    read_proto,
)
from napari_fibsem.core.models.tiling import predict_tiled

__all__ = [
    "DEFAULT_STRIDE",
    "METADATA_KEY",
    "RUNTIMES",
    "OnnxModel",
    "OutputKind",
    "Runtime",
    "softmax_channels",
]

Runtime = Literal["auto", "onnxruntime", "openvino"]
RUNTIMES = ("auto", "onnxruntime", "openvino")
DEFAULT_STRIDE = 32


def softmax_channels(logits: np.ndarray) -> np.ndarray:
    """Softmax over axis 1 of ``N x C x H x W`` into a new float32 array (input left untouched)."""
    e = np.subtract(logits, logits.max(axis=1, keepdims=True), dtype=np.float32)
    np.exp(e, out=e)
    e /= e.sum(axis=1, keepdims=True)
    return e


# -- runtimes -----------------------------------------------------------------------------------
class _OrtRunner:
    """ONNX Runtime session with all graph optimisations (conv+BN folding, NCHWc layouts)."""

    name = "onnxruntime"

    def __init__(self, path: Path, device: str, threads: int | None) -> None:
        ort = require("onnxruntime", "onnx")
        available = ort.get_available_providers()
        if device == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise ValueError(
                    f"device 'cuda' needs onnxruntime-gpu (CUDAExecutionProvider); available: {available}"
                )
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(threads or 0)  # 0: one per physical core
        options.log_severity_level = 3  # errors only; failures reach the user as ModelLoadError
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


class _OpenVinoRunner:
    """OpenVINO CPU plugin in f32 (its default on bf16-capable CPUs is bf16, ~0.5 off in probabilities)."""

    name = "openvino"

    def __init__(self, path: Path, device: str, threads: int | None) -> None:
        ov = require("openvino", "openvino")
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()  # not re-entrant: OnnxModel locks

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        # a view of the request's output buffer, valid until the next call: OnnxModel._run turns
        # it into a new array (softmax or copy) while still holding its lock
        return self.request.infer({0: batch})[0]


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _make_runner(path: Path, runtime: str, device: str, threads: int | None) -> Any:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown ONNX runtime {runtime!r}; choose one of {list(RUNTIMES)}")
    if runtime == "openvino" and device != "cpu":
        raise ValueError(f"the openvino runtime runs on 'cpu' here, not {device!r}")
    if runtime == "auto":
        # OpenVINO, where installed, is the faster CPU runtime (see benchmarks/inference.py);
        # a graph it cannot compile still gets ONNX Runtime
        order = ["openvino", "onnxruntime"] if device == "cpu" and _have("openvino") else ["onnxruntime"]
    else:
        order = [runtime]
    errors = []
    for name in order:
        try:
            return (_OpenVinoRunner if name == "openvino" else _OrtRunner)(path, device, threads)
        except (ImportError, ValueError):  # missing extra, no CUDA provider: the user must act
            raise
        except Exception as e:  # the runtime's own parse/compile errors
            lines = str(e).strip().splitlines()
            errors.append(f"{name}: {lines[0] if lines else type(e).__name__}")
    raise ModelLoadError(f"{path}: cannot load this ONNX model ({'; '.join(errors)})")


def _resolve_device(device: Any) -> str:
    if device is None:
        if _have("onnxruntime"):
            import onnxruntime as ort

            if "CUDAExecutionProvider" in ort.get_available_providers():
                return "cuda"
        return "cpu"
    name = str(device).split(":")[0]
    if name not in ("cpu", "cuda"):
        raise ValueError(f"ONNX models run on 'cpu' or 'cuda', not {device!r}")
    return name


class OnnxModel(TiledSegmentationModel):
    """An ONNX segmentation network; see :class:`TiledSegmentationModel` for ``predict``.

    Create with :meth:`load` (or ``load_model(path)``). ``runtime="auto"`` uses OpenVINO on the
    CPU when it is installed (``napari-fibsem[openvino]``) and ONNX Runtime otherwise.
    """

    backend = "onnx"

    def __init__(
        self,
        runner: Any,
        metadata: BundleMetadata,
        *,
        path: Path,
        stride: int = DEFAULT_STRIDE,
        output: OutputKind = "logits",
        device: str = "cpu",
        fixed_batch: int | None = None,
        fixed_size: tuple[int, int] | None = None,
        tile_size: int | None = None,
        tile_overlap: float = 0.25,
        batch_size: int = 4,
    ) -> None:
        if output not in ("logits", "probs"):
            raise ValueError(f"output must be 'logits' or 'probs', not {output!r}")
        self.metadata = metadata
        self.class_map = metadata.class_map
        self.normalization = metadata.normalization
        self.input_scale = metadata.input_scale
        self.path = path
        self.stride = int(stride)
        self.output = output
        self.fixed_batch = fixed_batch
        self.fixed_size = fixed_size
        default_tile = max(fixed_size) if fixed_size else 2048
        self.tile_size = int(tile_size if tile_size is not None else default_tile)
        self.tile_overlap = float(tile_overlap)
        self.batch_size = int(fixed_batch or batch_size)
        self._runner = runner
        self._device = device
        self._lock = threading.RLock()

    @property
    def device(self) -> str:
        return self._device

    @property
    def runtime(self) -> str:
        """``onnxruntime`` or ``openvino``."""
        return self._runner.name

    def __repr__(self) -> str:
        return (
            f"OnnxModel({self.path.name}, {self.num_classes} classes, runtime={self.runtime}, "
            f"device={self.device}, normalization={self.normalization.mode})"
        )

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | Path,
        device: Any = None,
        *,
        runtime: Runtime = "auto",
        threads: int | None = None,
        class_map: ClassMap | Sequence[str] | None = None,
        normalization: Normalization | Mapping[str, Any] | None = None,
        stride: int | None = None,
        output: OutputKind | None = None,
        **options: Any,
    ) -> OnnxModel:
        """Load an ONNX file; its own metadata first, then the keyword overrides, then defaults.

        ``class_map``/``normalization``/``stride``/``output`` are for files without our metadata
        (defaults: AutoLamella classes for 6 outputs else generic names, ``fixed`` normalisation,
        stride 32, logits unless the graph ends in a channel Softmax). ``options`` are
        ``tile_size``, ``tile_overlap`` and ``batch_size``.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
        proto = read_proto(path)
        ours = our_metadata(proto, path)
        in_dims, out_dims = check_io(proto, path)
        dev = _resolve_device(device)
        runner = _make_runner(path, runtime, dev, threads)
        fixed_batch, fixed_size = fixed_input(in_dims)
        meta, kind, stride = _file_settings(proto, ours, path, output, stride)
        del proto

        nc = declared_classes(out_dims)
        if nc is None:
            nc = _probe_classes(runner, path, fixed_batch or 1, fixed_size or (2 * stride, 2 * stride))
        meta = _with_overrides(meta or _default_metadata(nc), class_map, normalization)
        if meta.num_classes != nc:
            raise ModelLoadError(
                f"{path}: the network outputs {nc} channels but its class map needs {meta.num_classes}"
            )
        return cls(
            runner,
            meta,
            path=path,
            stride=stride,
            output=kind,
            device=dev,
            fixed_batch=fixed_batch,
            fixed_size=fixed_size,
            **options,
        )

    # -- inference ------------------------------------------------------------------------------
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if self.fixed_size is None or tuple(batch.shape[2:]) == self.fixed_size:
            return self._run(batch)
        fh, fw = self.fixed_size
        h, w = batch.shape[2:]
        if h <= fh and w <= fw:  # a file exported for one size: pad up to it and crop back
            mode = "reflect" if h > 1 and w > 1 else "edge"
            padded = np.pad(batch, ((0, 0), (0, 0), (0, fh - h), (0, fw - w)), mode=mode)
            return self._run(padded)[..., :h, :w]
        return np.stack(  # larger than the file's size: slide windows that fit it
            [
                predict_tiled(
                    image[0],
                    self._infer,
                    num_classes=self.num_classes,
                    tile_size=min(fh, fw),
                    overlap=self.tile_overlap,
                    stride=self.stride,
                    batch_size=self.batch_size,
                )
                for image in batch
            ]
        )

    def _run(self, batch: np.ndarray) -> np.ndarray:
        n = self.fixed_batch
        if n is None or batch.shape[0] == n:
            with self._lock:  # runner outputs may be views of a buffer the next call overwrites
                out = np.asarray(self._runner(np.ascontiguousarray(batch, dtype=np.float32)))
                return softmax_channels(out) if self.output == "logits" else np.array(out, np.float32)
        parts = []
        for start in range(0, batch.shape[0], n):
            chunk = batch[start : start + n]
            fill = n - chunk.shape[0]
            if fill:  # the graph wants exactly n images: repeat the last one
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fill, axis=0)])
            parts.append(self._run(chunk)[: n - fill])
        return np.concatenate(parts)


# -- loading steps ------------------------------------------------------------------------------
def _file_settings(
    proto: Any, ours: dict[str, Any] | None, path: Path, output: OutputKind | None, stride: int | None
) -> tuple[BundleMetadata | None, OutputKind, int]:
    """Metadata, output kind and stride: the caller's choice, else our metadata, else the graph/defaults."""
    if ours is not None:
        meta = BundleMetadata.from_dict(ours, source=path)
        kind = output or ours.get("output", "logits")
        return meta, kind, stride or int(ours.get("stride", DEFAULT_STRIDE))
    kind = output or graph_output_kind(proto, proto.graph.output[0].name)
    return None, kind, stride or DEFAULT_STRIDE


def _default_metadata(num_classes: int) -> BundleMetadata:
    """What a file without our metadata is assumed to be (AutoLamella classes for 6 outputs)."""
    return BundleMetadata(
        class_map=openfibsem_class_map(num_classes),
        architecture="unknown",
        encoder="unknown",
        normalization=Normalization(),
        created_at="",
        package_version="",
        backend="onnx",
        source_format="onnx",
    )


def _with_overrides(
    meta: BundleMetadata,
    class_map: ClassMap | Sequence[str] | None,
    normalization: Normalization | Mapping[str, Any] | None,
) -> BundleMetadata:
    """``meta`` with the class map and normalisation the caller passed to ``load``, if any."""
    if class_map is not None:
        cm = class_map if isinstance(class_map, ClassMap) else ClassMap.from_names(class_map)
        meta = _replace(meta, class_map=cm)
    if normalization is not None:
        norm = (
            normalization
            if isinstance(normalization, Normalization)
            else Normalization.from_dict(normalization)
        )
        meta = _replace(meta, normalization=norm)
    return meta


def _replace(meta: BundleMetadata, **changes: Any) -> BundleMetadata:
    import dataclasses

    return dataclasses.replace(meta, **changes)


def _probe_classes(runner: Any, path: Path, n: int, size: tuple[int, int]) -> int:
    """Output channels of a graph whose output shape is not declared: run it once on zeros."""
    try:
        out = np.asarray(runner(np.zeros((n, 1, *size), np.float32)))
    except Exception as e:
        raise ModelLoadError(
            f"{path}: cannot run the ONNX model on a {size[0]}x{size[1]} test input ({e})"
        ) from None
    if out.ndim != 4 or out.shape[1] < 1:
        raise ModelLoadError(f"{path}: the model's output has shape {out.shape}; expected N x C x H x W")
    return int(out.shape[1])
