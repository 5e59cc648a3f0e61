"""Training segmentation models: config, augmentation, losses, metrics, the loop, resume, DDP.

    from napari_fibsem.core.training import load_config, train
    result = train(load_config("config.yaml"), on_progress=print)

Names are resolved lazily, so reading a config does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

from napari_fibsem.core.errors import ConfigError  # the one configuration error, shared with the microscope

_EXPORTS = {
    "AugmentConfig": "config",
    "LossConfig": "config",
    "TrainingConfig": "config",
    "load_config": "config_file",
    "parse_config": "config_file",
    "EMAugment": "augment",
    "SegmentationLoss": "losses",
    "SegmentationMetrics": "metrics",
    "compute_metrics": "metrics",
    "confusion_matrix": "metrics",
    "Progress": "progress",
    "StopFlag": "progress",
    "TrainingSetupError": "data",
    "Trainer": "loop",
    "TrainingError": "progress",
    "TrainingResult": "progress",
    "train": "loop",
    "DistContext": "ddp",
    "train_distributed": "launch",
}

__all__ = [
    "AugmentConfig",
    "ConfigError",
    "DistContext",
    "EMAugment",
    "LossConfig",
    "Progress",
    "SegmentationLoss",
    "SegmentationMetrics",
    "StopFlag",
    "Trainer",
    "TrainingConfig",
    "TrainingError",
    "TrainingResult",
    "TrainingSetupError",
    "compute_metrics",
    "confusion_matrix",
    "load_config",
    "parse_config",
    "train",
    "train_distributed",
]

if TYPE_CHECKING:
    from napari_fibsem.core.training.augment import EMAugment
    from napari_fibsem.core.training.config import AugmentConfig, LossConfig, TrainingConfig
    from napari_fibsem.core.training.config_file import load_config, parse_config
    from napari_fibsem.core.training.data import TrainingSetupError
    from napari_fibsem.core.training.ddp import DistContext
    from napari_fibsem.core.training.launch import train_distributed
    from napari_fibsem.core.training.loop import Trainer, train
    from napari_fibsem.core.training.losses import SegmentationLoss
    from napari_fibsem.core.training.metrics import SegmentationMetrics, compute_metrics, confusion_matrix
    from napari_fibsem.core.training.progress import Progress, StopFlag, TrainingError, TrainingResult


# lazy_loader (as scikit-image and napari do): a name's submodule is imported on first access.
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__, submod_attrs={m: [n for n, mod in _EXPORTS.items() if mod == m] for m in set(_EXPORTS.values())}
)
