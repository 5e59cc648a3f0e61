"""Optimiser and learning-rate schedule of a run.

The schedule is stepped after every optimiser step (not every epoch), so a run resumed in the
middle of an epoch lands on exactly the learning rate the uninterrupted run had there.
"""

from __future__ import annotations

from typing import Any

import torch

from napari_fibsem.core.training.config import TrainingConfig


def build_optimizer(cfg: TrainingConfig, params: Any) -> torch.optim.Optimizer:
    """AdamW (default), Adam or SGD with Nesterov momentum, with the config's lr and weight decay."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)


def build_scheduler(cfg: TrainingConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
    """Cosine annealing to ``min_lr`` over the whole run, step decay every ``step_size`` epochs, or none."""
    if cfg.scheduler == "cosine":
        total = max(1, cfg.epochs * steps_per_epoch)
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=cfg.min_lr)
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=cfg.step_size * steps_per_epoch, gamma=cfg.gamma
        )
    return None
