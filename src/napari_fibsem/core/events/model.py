"""The event heatmap U-Net, its frame windows, and event bundles (the usual bundle format, marked).

The network sees ``n_frames`` frames centred on a target frame (clamped at the movie ends, so the
first frame's window repeats frame 0) times the movie's channels, stacked as input channels, and
returns one logit map: the event score of the target frame. Any height and width work: inputs are
padded to a multiple of ``2**depth`` inside ``forward`` and the output is cropped back.

An event model is saved as a normal checkpoint bundle (:func:`~napari_fibsem.core.models.bundle.
write_bundle`, weights_only-loadable) whose metadata says ``task: events`` and carries what
prediction needs: frames, channels, normalisation, the threshold chosen on the validation split,
hysteresis, matching settings and the scores. Its ``backend`` is ``events``, so the segmentation
loader refuses it by content instead of building the wrong network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_fibsem.core.events.settings import EventSettings
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.models.base import ModelLoadError
from napari_fibsem.core.models.bundle import (
    BUNDLE_KEY,
    BundleMetadata,
    load_torch_payload,
    split_bundle,
    to_jsonable,
    write_bundle,
)
from napari_fibsem.core.models.normalization import Normalization

TASK = "events"
ARCHITECTURE = "HeatmapUNet"
MIN_DISTANCE = 3
"""Events closer than this (px, same frame) are merged by :func:`~.peaks.find_events`."""
NORMALISATION = Normalization(mode="percentile", low=1.0, high=99.8)
"""Per movie (crop) and channel: the 1st/99.8th percentiles of all its frames map to 0/1."""


# -- network --------------------------------------------------------------------------------------
def _block(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class HeatmapUNet(nn.Module):
    """A plain U-Net: ``depth`` poolings, ``nb_filters * 2**level`` filters, one output logit map."""

    def __init__(
        self, in_channels: int, nb_filters: int = 16, depth: int = 3, first_conv_size: int = 3
    ) -> None:
        super().__init__()
        if in_channels < 1 or nb_filters < 1 or depth < 1 or first_conv_size % 2 != 1:
            raise ValueError(
                f"invalid U-Net: in_channels={in_channels}, nb_filters={nb_filters}, depth={depth}, "
                f"first_conv_size={first_conv_size} (odd)"
            )
        self.config = {"in_channels": in_channels, "nb_filters": nb_filters, "depth": depth,
                       "first_conv_size": first_conv_size}  # fmt: skip
        widths = [nb_filters * 2**i for i in range(depth + 1)]
        self.encoder = nn.ModuleList(
            [_block(in_channels, widths[0], first_conv_size)]
            + [_block(widths[i - 1], widths[i]) for i in range(1, depth + 1)]
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.decoder = nn.ModuleList(_block(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], 1, 1)

    @property
    def in_channels(self) -> int:
        return int(self.config["in_channels"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``N x in_channels x H x W`` -> ``N x 1 x H x W`` logits, for any H and W."""
        h, w = x.shape[-2:]
        m = 2 ** self.config["depth"]
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.up, self.decoder):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)[..., :h, :w]


def build_heatmap_unet(settings: EventSettings, channels: int = 1) -> HeatmapUNet:
    """The U-Net a settings file describes, for movies with ``channels`` channels."""
    return HeatmapUNet(
        settings.n_frames * channels, settings.nb_filters, settings.depth, settings.first_conv_size
    )


# -- windows and score maps ------------------------------------------------------------------------
def as_tchw(stack: np.ndarray) -> np.ndarray:
    """(T, H, W) -> (T, 1, H, W); (T, C, H, W) unchanged; anything else is an error."""
    if stack.ndim == 3:
        return stack[:, None]
    if stack.ndim == 4:
        return stack
    raise ValueError(f"expected a (T, H, W) or (T, C, H, W) movie, got shape {stack.shape}")


def window_indices(t: int, length: int, n_frames: int) -> np.ndarray:
    """Frame indices of the window centred on ``t``, clamped to ``0 .. length - 1``."""
    half = n_frames // 2
    return np.clip(np.arange(t - half, t + half + 1), 0, length - 1)


def window(stack: np.ndarray, t: int, n_frames: int) -> np.ndarray:
    """The network input for frame ``t`` of a (T, C, H, W) stack: (n_frames * C, H, W)."""
    sel = stack[window_indices(t, stack.shape[0], n_frames)]
    return sel.reshape(-1, *stack.shape[-2:])


def normalise(stack: np.ndarray, normalisation: Normalization = NORMALISATION) -> np.ndarray:
    """float32 copy of a (T, [C,] H, W) movie, normalised per channel over all its frames."""
    stack = np.asarray(stack)
    if stack.ndim == 4:
        return np.stack([normalisation.apply(stack[:, c]) for c in range(stack.shape[1])], axis=1)
    return normalisation.apply(stack)


@torch.no_grad()
def score_map(
    module: nn.Module,
    stack: np.ndarray,
    n_frames: int,
    device: torch.device | str | None = None,
    batch_size: int = 8,
) -> np.ndarray:
    """Event probabilities (T, H, W) for a *normalised* (T, [C,] H, W) movie, frame by frame."""
    stack = as_tchw(np.asarray(stack, np.float32))
    device = torch.device(device) if device is not None else next(module.parameters()).device
    was_training = module.training
    module.eval()
    out = np.empty((stack.shape[0], *stack.shape[-2:]), np.float32)
    try:
        for start in range(0, stack.shape[0], batch_size):
            ts = range(start, min(start + batch_size, stack.shape[0]))
            x = torch.from_numpy(np.stack([window(stack, t, n_frames) for t in ts])).to(device)
            out[start : start + len(ts)] = torch.sigmoid(module(x)[:, 0].float()).cpu().numpy()
    finally:
        module.train(was_training)
    return out


# -- bundles --------------------------------------------------------------------------------------
@dataclass
class _EventBundleMetadata(BundleMetadata):
    """Bundle metadata plus the event section (``task: events`` at the top level)."""

    events: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "task": TASK, "events": to_jsonable(self.events, "event metadata")}


@dataclass
class EventModel:
    """A loaded event model: ``module`` (eval mode) and what prediction needs to use it."""

    module: HeatmapUNet
    n_frames: int
    channels: int
    threshold: float
    hysteresis: float
    normalisation: Normalization
    min_distance: int = MIN_DISTANCE
    metadata: dict[str, Any] = field(default_factory=dict)
    """The whole stored metadata (``events`` holds the event section, ``training_config`` the settings)."""
    path: Path | None = None

    def normalise(self, stack: np.ndarray) -> np.ndarray:
        """A raw (T, [C,] H, W) movie as the network expects it (float32, per channel)."""
        stack = np.asarray(stack)
        got = 1 if stack.ndim == 3 else (stack.shape[1] if stack.ndim == 4 else None)
        if got != self.channels:
            raise ValueError(
                f"the model expects a movie with {self.channels} channel(s), got shape {stack.shape}"
            )
        return normalise(stack, self.normalisation)

    def score_map(self, stack: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """Event probabilities (T, H, W) of a raw movie (normalised here)."""
        return score_map(self.module, self.normalise(stack), self.n_frames, batch_size=batch_size)


def save_event_bundle(
    path: str | Path, model: HeatmapUNet, settings: EventSettings, threshold: float, scores: Mapping[str, Any]
) -> Path:
    """Write ``model`` as an event bundle (atomically) with its threshold and scores."""
    channels = model.in_channels // settings.n_frames
    events = {
        "task": TASK,
        "n_frames": settings.n_frames,
        "channels": channels,
        "threshold": float(threshold),
        "hysteresis": settings.hysteresis,
        "min_distance": MIN_DISTANCE,
        "match_distance": settings.match_distance,
        "match_frames": settings.match_frames,
        "beta": settings.beta,
        "normalisation": {**NORMALISATION.to_dict(), "per": "movie and channel"},
        "scores": dict(scores),
    }
    meta = _EventBundleMetadata(
        class_map=ClassMap.from_names(["background", "event"]),
        architecture=ARCHITECTURE,
        encoder="none",
        normalization=NORMALISATION,
        model_kwargs=dict(model.config),
        in_channels=model.in_channels,
        training_config=settings.to_jsonable(),
        metrics=dict(scores),
        backend=TASK,
        events=events,
    )
    return write_bundle(path, meta, model.state_dict())


def load_event_bundle(path: str | Path, device: torch.device | str | None = None) -> EventModel:
    """Read an event bundle; anything else (a segmentation bundle, wrong weights) is one clear error."""
    path = Path(path)
    payload = load_torch_payload(path)
    if not isinstance(payload, Mapping) or BUNDLE_KEY not in payload:
        raise ModelLoadError(f"{path}: not a napari-fibsem checkpoint bundle, so not an event model")
    raw = payload.get("metadata")
    if not isinstance(raw, Mapping) or raw.get("task") != TASK:
        kind = (
            f"a {raw.get('backend', 'smp')} {raw.get('architecture', '?')} segmentation model"
            if isinstance(raw, Mapping)
            else "no model metadata"
        )
        raise ModelLoadError(
            f"{path}: not an event model (it holds {kind}); train one with `napari-fibsem events train`"
        )
    meta, state_dict = split_bundle(payload, source=path)
    ev = raw.get("events")
    try:
        if not isinstance(ev, Mapping):
            raise TypeError("the 'events' section is missing")
        module = HeatmapUNet(**meta.model_kwargs)
        n_frames, channels = int(ev["n_frames"]), int(ev["channels"])
        if n_frames * channels != module.in_channels:
            raise ValueError(
                f"{n_frames} frames x {channels} channels != {module.in_channels} input channels"
            )
        model = EventModel(
            module=module,
            n_frames=n_frames,
            channels=channels,
            threshold=float(ev["threshold"]),
            hysteresis=float(ev["hysteresis"]),
            normalisation=meta.normalization,
            min_distance=int(ev.get("min_distance", MIN_DISTANCE)),
            metadata=dict(raw),
            path=path,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ModelLoadError(f"{path}: invalid event-model metadata ({e})") from None
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise ModelLoadError(
            f"{path}: the weights do not fit the event model its metadata describes ({detail})"
        ) from None
    module.to(device if device is not None else "cpu").eval()
    return model
