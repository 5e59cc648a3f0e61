"""Segmentation losses: cross-entropy, soft Dice and focal, weighted and summed.

All take raw logits ``N x C x H x W`` and integer targets ``N x H x W`` in which ``IGNORE`` marks
pixels that carry no label (padding added to batch images of different sizes). CE alone is
dominated by the background on FIB-SEM frames (a needle tip is a few hundred pixels of a million);
Dice weighs each class by its own overlap, so small structures are learned too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from napari_fibsem.core.training.config import LossConfig

IGNORE = -1
"""Target value of pixels excluded from losses and metrics."""


def cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean CE over labelled pixels (weighted mean with ``weight``); 0 when none is labelled."""
    per_pixel = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE, reduction="none")
    valid = target != IGNORE
    if weight is None:
        denom = valid.sum()
    else:
        denom = (weight.to(per_pixel.dtype)[torch.where(valid, target, 0)] * valid).sum()
    return per_pixel.sum() / denom.clamp_min(1e-12)


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1.0
) -> torch.Tensor:
    """``1 - soft Dice`` per class over the whole batch, averaged over the classes present in ``target``.

    Classes absent from the batch's labels are left out (their Dice is undefined; CE still
    penalises predicting them), as in segmentation_models_pytorch's multiclass Dice.
    """
    n, c = logits.shape[:2]
    probs = logits.float().softmax(dim=1)
    valid = target != IGNORE
    safe = torch.where(valid, target, torch.zeros_like(target))
    onehot = F.one_hot(safe, c).permute(0, 3, 1, 2).to(probs.dtype)
    v = valid.unsqueeze(1).to(probs.dtype)
    probs, onehot = probs * v, onehot * v
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    card = probs.sum(dims) + onehot.sum(dims)
    dice = (2.0 * inter + eps) / (card + eps)
    present = (onehot.sum(dims) > 0).to(probs.dtype)
    w = present if weight is None else present * weight.to(probs.dtype)
    return ((1.0 - dice) * w).sum() / w.sum().clamp_min(1e-12)


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy scaled by ``(1 - p_true) ** gamma``: easy pixels count less (Lin et al. 2017)."""
    valid = target != IGNORE
    logp = F.log_softmax(logits.float(), dim=1)
    safe = torch.where(valid, target, torch.zeros_like(target))
    logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    loss = -((1.0 - logp_t.exp()) ** gamma) * logp_t
    if weight is not None:
        loss = loss * weight.to(loss.dtype)[safe]
    return (loss * valid).sum() / valid.sum().clamp_min(1)


class SegmentationLoss(torch.nn.Module):
    """``ce * CE + dice * Dice + focal * Focal`` with optional per-class weights."""

    def __init__(
        self, config: LossConfig | None = None, class_weights: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        self.config = config if config is not None else LossConfig()
        weight = torch.tensor(list(class_weights), dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if self.weight is not None and self.weight.numel() != logits.shape[1]:
            raise ValueError(
                f"{self.weight.numel()} class weights for a network with {logits.shape[1]} outputs"
            )
        logits = logits.float()
        total = logits.new_zeros(())
        if cfg.ce > 0:
            total = total + cfg.ce * cross_entropy(logits, target, self.weight)
        if cfg.dice > 0:
            total = total + cfg.dice * dice_loss(logits, target, self.weight)
        if cfg.focal > 0:
            total = total + cfg.focal * focal_loss(logits, target, cfg.focal_gamma, self.weight)
        return total
