"""Training a segmentation model in ``nprocs`` local processes (``napari-fibsem train --nprocs N``).

Apart from ``ddp`` so the process-group helpers there never import the trainer that uses them.
"""

from __future__ import annotations

from typing import Any

from napari_fibsem.core.training.config import TrainingConfig
from napari_fibsem.core.training.ddp import DistContext, run_distributed
from napari_fibsem.core.training.loop import Trainer
from napari_fibsem.core.training.progress import TrainingResult


def train_distributed(config: TrainingConfig, nprocs: int, **trainer_kwargs: Any) -> TrainingResult:
    """Train a segmentation model with ``nprocs`` local processes and return rank 0's result.

    ``trainer_kwargs`` (e.g. ``write``) are used by rank 0 only and must be picklable; progress
    callbacks cannot cross processes, so they are not accepted here.
    """
    if nprocs < 1:
        raise ValueError(f"nprocs must be >= 1, got {nprocs}")
    if "on_progress" in trainer_kwargs or "should_stop" in trainer_kwargs:
        raise TypeError("on_progress/should_stop cannot be passed to spawned processes")
    if nprocs == 1:
        return Trainer(config, **trainer_kwargs).run()
    return run_distributed(_train_segmentation, config.to_jsonable(), nprocs, **trainer_kwargs)[0]


def _train_segmentation(
    config_data: dict, ctx: DistContext, init_method: str, **kwargs: Any
) -> TrainingResult:
    config = TrainingConfig.model_validate(config_data)
    return Trainer(config, dist_context=ctx, init_method=init_method, **kwargs).run()
