"""The ``nnunet`` backend: a trained nnU-Net v2 2D model behind the usual ``predict``.

``load_model(results_folder)`` reads ``<trainer>__<plans>__2d/`` (see :mod:`.nnunet_folder`; no
pickled code runs), builds the network from the plans with nnunetv2's own
``get_network_from_plans`` and predicts the way nnU-Net's ``nnUNetPredictor`` does, so its
numbers can be trusted to match a model someone validated with nnU-Net:

1. crop to the bounding box of non-zero pixels (outside it: background, probability 1);
2. the plans' intensity normalisation (z-score per image, CT-style clipping with dataset
   statistics, rescale to 0..1, or none);
3. zero-pad to at least the patch size (centred), slide patch-sized windows with half a patch step,
   weight each window with nnU-Net's Gaussian importance map (its float16 values), mirror
   test-time augmentation over the axes the trainer allowed;
4. average logits over mirrors and folds (as the predictor does), softmax, undo crop and padding.

Logits are accumulated in float32 where nnU-Net's predictor uses float16: probabilities match
the predictor to ~1e-6 when its accumulator is switched to float32, and to a few 1e-3 as shipped
(tests/core/models/test_nnunet.py checks both). Only 2D configurations with unit spacing
(what 2D TIFF/PNG datasets give) and one input channel are supported; 3D, cascades, region-based
training and custom preprocessors are refused with a clear message.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_fibsem.core._optional import require
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.models.base import ModelLoadError, Prediction, as_2d_image
from napari_fibsem.core.models.nnunet_folder import (
    DEFAULT_CHECKPOINT,
    NnUNetFolder,
    build_network,
    check_plans,
    class_map_from_dataset_json,
    read_results_folder,
)

_EPS = 1e-8


@dataclass(frozen=True)
class NnUNetNormalization:
    """nnU-Net's intensity normalisation for one channel (``normalization_schemes`` in the plans)."""

    scheme: str = "ZScoreNormalization"
    use_mask: bool = False
    """z-score only over non-zero pixels (nnU-Net's ``use_mask_for_norm``); zeros stay zero."""
    intensity: Mapping[str, float] = field(default_factory=dict)
    """Dataset foreground statistics (``mean``, ``std``, ``percentile_00_5``, ``percentile_99_5``) for CT."""

    @property
    def mode(self) -> str:
        return f"nnunet:{self.scheme}"

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` normalised as float32, with nnU-Net's arithmetic (float32 statistics, eps 1e-8)."""
        x = np.array(image, dtype=np.float32)
        if self.scheme == "ZScoreNormalization":
            if self.use_mask:
                inside = x != 0
                values = x[inside]
                if values.size:
                    x[inside] = (values - values.mean()) / max(values.std(), _EPS)
            else:
                mean, std = x.mean(), x.std()
                x -= mean
                x /= max(std, _EPS)
        elif self.scheme == "CTNormalization":
            p = self.intensity
            np.clip(x, p["percentile_00_5"], p["percentile_99_5"], out=x)
            x -= p["mean"]
            x /= max(p["std"], _EPS)
        elif self.scheme == "RescaleTo01Normalization":
            x -= x.min()
            x /= max(x.max(), _EPS)
        elif self.scheme == "RGBTo01Normalization":
            if x.size and (x.min() < 0 or x.max() > 255):
                raise ValueError("this nnU-Net model expects 8-bit images (RGBTo01Normalization): values 0..255")
            x /= 255.0
        return x

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "use_mask": self.use_mask, "intensity": dict(self.intensity)}


def gaussian_importance(patch_size: Sequence[int]) -> np.ndarray:
    """nnU-Net's window weights: a Gaussian (sigma = patch / 8) peaking at 10, stored as float16 values."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros(tuple(patch_size))
    delta[tuple(s // 2 for s in patch_size)] = 1.0
    g = gaussian_filter(delta, [s / 8 for s in patch_size], 0, mode="constant", cval=0)
    g = (g / (g.max() / 10)).astype(np.float16)
    g[g == 0] = g[g > 0].min()  # a zero weight would divide by zero where only edges cover a pixel
    return g.astype(np.float32)


def window_starts(size: int, patch: int, step: float = 0.5) -> list[int]:
    """Evenly spread window offsets, at most ``patch * step`` apart (nnU-Net's sliding-window grid)."""
    if size <= patch:
        return [0]
    n = math.ceil((size - patch) / (patch * step)) + 1
    stride = (size - patch) / (n - 1)
    return [int(np.round(stride * i)) for i in range(n)]


def nonzero_box(image: np.ndarray) -> tuple[slice, slice]:
    """Bounding box of non-zero pixels (the whole image if there are none), as nnU-Net crops."""
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    if rows.size == 0:
        return slice(0, image.shape[0]), slice(0, image.shape[1])
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


class NnUNetModel:
    """A trained nnU-Net v2 2D model; create with :meth:`load` (or ``load_model(folder)``)."""

    backend = "nnunet"

    def __init__(
        self,
        networks: Sequence[Any],
        *,
        class_map: ClassMap,
        channel_ids: Sequence[int],
        patch_size: tuple[int, int],
        normalization: NnUNetNormalization,
        mirror_axes: tuple[int, ...] | None = (0, 1),
        transpose: bool = False,
        device: Any = "cpu",
        tile_step_size: float = 0.5,
        batch_size: int = 4,
        amp: bool | None = None,
        source: NnUNetFolder | None = None,
    ) -> None:
        import torch

        if not 0 < tile_step_size <= 1:
            raise ValueError(f"tile_step_size must be in (0, 1], got {tile_step_size}")
        self.networks = list(networks)
        self.class_map = class_map
        self.channel_ids = [int(c) for c in channel_ids]
        self.patch_size = (int(patch_size[0]), int(patch_size[1]))
        self.normalization = normalization
        self.mirror_axes = tuple(mirror_axes) if mirror_axes else None
        self.transpose = bool(transpose)
        self._device = torch.device(device)
        self.tile_step_size = float(tile_step_size)
        self.batch_size = max(1, int(batch_size))
        self.amp = self._device.type == "cuda" if amp is None else bool(amp)
        self.source = source
        self._gaussian = torch.from_numpy(gaussian_importance(self.patch_size)).to(self._device)

    @property
    def num_classes(self) -> int:
        return self.class_map.num_classes

    @property
    def device(self) -> str:
        return str(self._device)

    @property
    def torch_module(self) -> Any:
        """The first fold's network (the others are in :attr:`networks`)."""
        return self.networks[0]

    def __repr__(self) -> str:
        where = f"{self.source.path.name}, folds {self.source.folds}, " if self.source else ""
        return (
            f"NnUNetModel({where}{self.num_classes} classes, patch {self.patch_size}, "
            f"{self.normalization.scheme}, device={self.device})"
        )

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | Path,
        device: Any = None,
        *,
        folds: int | str | Sequence[int | str] | None = None,
        checkpoint: str = DEFAULT_CHECKPOINT,
        mirroring: bool = True,
        **options: Any,
    ) -> NnUNetModel:
        """Load a trainer folder ``<trainer>__<plans>__<configuration>``.

        ``folds`` (default: every ``fold_<n>`` with ``checkpoint``) are ensembled; ``checkpoint`` is
        ``checkpoint_final.pth`` or ``checkpoint_best.pth``; ``mirroring=False`` skips test-time
        mirroring (4x faster, slightly less accurate). ``options``: ``tile_step_size`` (0.5),
        ``batch_size`` (windows per network call), ``amp`` (mixed precision; default on CUDA).
        """
        require("nnunetv2", "nnunet")
        import torch

        found = read_results_folder(path, folds, checkpoint)
        plan = check_plans(found)
        class_map, channel_ids = class_map_from_dataset_json(found.dataset_json, found.path / "dataset.json")
        if len(channel_ids) != plan.heads:
            raise ModelLoadError(f"{found.path}: dataset.json labels do not match the network's outputs")
        mirror = found.mirror_axes if mirroring else None
        if mirror is not None and not set(mirror) <= {0, 1}:
            raise ModelLoadError(f"{found.path}: mirroring axes {mirror} do not fit a 2D model")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        networks = [
            build_network(found, plan, fold, weights).to(device).eval()
            for fold, weights in zip(found.folds, found.weights)
        ]
        found.weights = []  # now inside the networks
        normalization = NnUNetNormalization(plan.scheme, plan.use_mask, plan.intensity)
        return cls(
            networks,
            class_map=class_map,
            channel_ids=channel_ids,
            patch_size=plan.patch_size,
            normalization=normalization,
            mirror_axes=mirror,
            transpose=plan.transpose,
            device=device,
            source=found,
            **options,
        )

    # -- inference ------------------------------------------------------------------------------
    def predict(self, image: np.ndarray) -> Prediction:
        """Segment one 2D image of any size."""
        x = as_2d_image(image)
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == bool):
            raise TypeError(f"cannot segment an image of dtype {x.dtype}")
        x = x.astype(np.float32)
        if self.transpose:
            x = x.T
        box = nonzero_box(x)
        logits = self._sliding_window(self.normalization.apply(x[box]))
        logits -= logits.max(axis=0, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=0, keepdims=True)
        heads = np.zeros((logits.shape[0], *x.shape), np.float32)
        heads[0] = 1.0  # outside the non-zero box nnU-Net predicts background
        heads[(slice(None), *box)] = logits
        if self.transpose:
            heads = heads.transpose(0, 2, 1)
        probs = np.zeros((self.num_classes, *heads.shape[1:]), np.float32)
        probs[self.channel_ids] = heads
        probs = np.ascontiguousarray(probs)
        return Prediction(mask=np.argmax(probs, axis=0).astype(np.uint8), probs=probs)

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Segment several images (each is windowed on its own; windows are batched)."""
        return [self.predict(image) for image in images]

    def _sliding_window(self, image: np.ndarray) -> np.ndarray:
        """Blended logits ``heads x h x w`` for a normalised 2D crop."""
        import torch

        h, w = image.shape
        ph, pw = self.patch_size
        big_h, big_w = max(h, ph), max(w, pw)
        top, left = (big_h - h) // 2, (big_w - w) // 2
        padded = np.zeros((big_h, big_w), np.float32)
        padded[top : top + h, left : left + w] = image
        data = torch.from_numpy(padded).to(self._device)
        origins = [
            (y, x)
            for y in window_starts(big_h, ph, self.tile_step_size)
            for x in window_starts(big_w, pw, self.tile_step_size)
        ]
        acc = weight = None
        g = self._gaussian
        with torch.inference_mode():
            for i in range(0, len(origins), self.batch_size):
                chunk = origins[i : i + self.batch_size]
                batch = torch.stack([data[y : y + ph, x : x + pw] for y, x in chunk])[:, None]
                logits = self._logits(batch)
                if acc is None:
                    acc = torch.zeros((logits.shape[1], big_h, big_w), dtype=torch.float32, device=self._device)
                    weight = torch.zeros((big_h, big_w), dtype=torch.float32, device=self._device)
                for (y, x), out in zip(chunk, logits):
                    acc[:, y : y + ph, x : x + pw] += out * g
                    weight[y : y + ph, x : x + pw] += g
            acc /= weight
        return acc[:, top : top + h, left : left + w].cpu().numpy()

    def _logits(self, batch: Any) -> Any:
        """Logits averaged over mirrored copies (per fold), then over folds, as nnU-Net's predictor does."""
        import torch

        dims = [a + 2 for a in self.mirror_axes] if self.mirror_axes else []
        flips = [c for r in range(1, len(dims) + 1) for c in itertools.combinations(dims, r)]
        total = None
        with torch.autocast(self._device.type, enabled=self.amp):
            for net in self.networks:
                out = net(batch).float()
                for axes in flips:
                    out += torch.flip(net(torch.flip(batch, axes)).float(), axes)
                out /= len(flips) + 1
                total = out if total is None else total + out
        return total / len(self.networks)
