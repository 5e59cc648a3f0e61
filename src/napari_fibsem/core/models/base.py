"""The segmentation model interface every backend (smp, ONNX, nnU-Net) satisfies.

Widgets, detection and evaluation only talk to :class:`SegmentationModel`, so swapping a torch
checkpoint for an ONNX export changes nothing downstream. :class:`TiledSegmentationModel` holds
the parts all array-in/array-out backends share (normalisation, stride padding, tiling, softmax
output checks); a backend only implements :meth:`TiledSegmentationModel._infer`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from napari_fibsem.core.data.scaling import resize_image, resize_probs, scaled_shape
from napari_fibsem.core.errors import FibsemError
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.models.normalization import Normalization
from napari_fibsem.core.models.tiling import crop_pads, effective_tile_size, pad_to_multiple, predict_tiled


class ModelLoadError(FibsemError, ValueError):
    """A model file or folder cannot be loaded; the message names it and says why."""


@dataclass(frozen=True)
class Prediction:
    """One image's result: ``mask`` (uint8, H x W class ids) and ``probs`` (float32, C x H x W, sums to 1)."""

    mask: np.ndarray
    probs: np.ndarray


@runtime_checkable
class SegmentationModel(Protocol):
    """What the rest of napari-fibsem needs from a semantic segmentation model."""

    backend: str
    class_map: ClassMap
    normalization: Normalization

    @property
    def num_classes(self) -> int: ...

    @property
    def device(self) -> str: ...

    @property
    def torch_module(self) -> Any | None:
        """The underlying ``torch.nn.Module`` (for training), or None for non-torch backends."""
        ...

    def predict(self, image: np.ndarray) -> Prediction: ...

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Prediction]: ...


def as_2d_image(image: np.ndarray) -> np.ndarray:
    """Accept ``H x W``, ``1 x H x W`` or ``H x W x 1``; anything else is a clear error, not a silent reshape."""
    arr = np.asarray(image)
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr[0] if arr.shape[0] == 1 else arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"expected a 2D grayscale image (H x W), got shape {tuple(np.shape(image))}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"cannot segment an empty image of shape {arr.shape}")
    return arr


class TiledSegmentationModel(ABC):
    """Shared predict pipeline: (resize to ``input_scale``) -> normalise -> reflect-pad to stride ->
    (tile) -> infer -> crop -> (resize the probabilities to the full size) -> argmax.

    Subclasses set ``backend``, ``class_map``, ``normalization``, ``stride`` and implement ``_infer``.
    Everything that makes inference fast (device, precision, compiled runtimes) lives behind
    ``_infer``, so an optimised runtime slots in without touching padding or tiling.
    """

    backend: str = "base"
    class_map: ClassMap
    normalization: Normalization
    stride: int = 32
    tile_size: int = 2048
    """Images whose padded side exceeds this are predicted in overlapping tiles of this size."""
    tile_overlap: float = 0.25
    """Fraction of a tile shared with its neighbour (blended with a smooth window)."""
    batch_size: int = 4
    """Tiles or same-sized images sent to the network at once."""
    input_scale: float = 1.0
    """The network sees images resized by this factor (from the model's metadata); masks and
    probabilities come back at the image's own size."""

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """``N x 1 x h x w`` float32 (h, w multiples of ``stride``) -> ``N x C x h x w`` float32 probabilities."""

    @property
    def num_classes(self) -> int:
        return self.class_map.num_classes

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def torch_module(self) -> Any | None:
        return None

    # -- public API -----------------------------------------------------------------------------
    def predict(self, image: np.ndarray) -> Prediction:
        """Segment one 2D image of any size and integer/float dtype."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Segment several images; same-sized small ones share a network call."""
        prepared = []
        for image in images:
            image = as_2d_image(image)
            full = image.shape
            if self.input_scale != 1.0:
                image = resize_image(image, scaled_shape(full, self.input_scale))
            x, pads = pad_to_multiple(self.normalization.apply(image), self.stride)
            prepared.append((x, pads, full))
        results: list[Prediction | None] = [None] * len(prepared)
        tile = effective_tile_size(self.tile_size, self.stride)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (x, _, _) in enumerate(prepared):
            if max(x.shape) > tile:
                probs = predict_tiled(
                    x,
                    self._checked_infer,
                    num_classes=self.num_classes,
                    tile_size=tile,
                    overlap=self.tile_overlap,
                    stride=self.stride,
                    batch_size=self.batch_size,
                )
                results[i] = self._finish(probs, *prepared[i][1:])
            else:
                groups.setdefault(x.shape, []).append(i)
        for idx in groups.values():
            for start in range(0, len(idx), max(1, self.batch_size)):
                chunk = idx[start : start + max(1, self.batch_size)]
                batch = np.stack([prepared[i][0] for i in chunk])[:, None]
                for i, probs in zip(chunk, self._checked_infer(batch), strict=True):
                    results[i] = self._finish(probs, *prepared[i][1:])
        return results  # type: ignore[return-value]

    # -- helpers --------------------------------------------------------------------------------
    def _checked_infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        probs = np.asarray(self._infer(batch), dtype=np.float32)
        expected = (batch.shape[0], self.num_classes, *batch.shape[2:])
        if probs.shape != expected:
            raise RuntimeError(
                f"{self.backend} backend returned probabilities of shape {probs.shape}, expected {expected} "
                f"(does the class map match the model's output channels?)"
            )
        return probs

    @staticmethod
    def _finish(probs: np.ndarray, pads: tuple[int, int, int, int], shape: tuple[int, int]) -> Prediction:
        probs = resize_probs(crop_pads(probs, pads), shape)
        probs = np.ascontiguousarray(probs, dtype=np.float32)
        mask = np.argmax(probs, axis=0).astype(np.uint8)
        return Prediction(mask=mask, probs=probs)
