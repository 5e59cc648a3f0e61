"""Losses of the event heatmap model: one logit map against a soft (Gaussian) target in [0, 1].

Everything works on logits through ``logsigmoid`` (``log p = logsigmoid(z)``,
``log(1 - p) = logsigmoid(-z)``), so a logit of +-1e4 gives a finite loss and finite gradients
instead of ``log(0)``.

The soft focal loss generalises the binary focal loss (Lin et al. 2017) to a target ``y`` that is
not 0 or 1: each pixel is ``y`` parts positive and ``1 - y`` parts negative,

    FL = -[ alpha * y * (1 - p)**gamma * log p + (1 - alpha) * (1 - y) * p**gamma * log(1 - p) ]

so the few event pixels (``alpha``) are not drowned by the background, and pixels already
predicted well (``p`` near the target side) count less (``gamma``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_NAMES = ("soft_focal", "bce", "dice", "bce_dice")


def soft_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.75, gamma: float = 2.0
) -> torch.Tensor:
    """Mean soft focal loss; see the module docstring."""
    z = logits.float()
    y = target.to(z.dtype)
    log_p, log_q = F.logsigmoid(z), F.logsigmoid(-z)  # log p, log(1 - p)
    pos = alpha * y * torch.exp(gamma * log_q) * log_p  # (1 - p)**gamma = exp(gamma * log(1 - p))
    neg = (1.0 - alpha) * (1.0 - y) * torch.exp(gamma * log_p) * log_q
    return -(pos + neg).mean()


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy with soft targets (torch's logits form is already stable)."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """``1 - soft Dice`` over the whole batch (an empty target and empty prediction give 0)."""
    p = torch.sigmoid(logits.float())
    y = target.float()
    inter = (p * y).sum()
    return 1.0 - (2.0 * inter + eps) / (p.sum() + y.sum() + eps)


class EventLoss(torch.nn.Module):
    """The loss a settings file names: ``soft_focal``, ``bce``, ``dice`` or ``bce_dice`` (their sum)."""

    def __init__(self, name: str = "soft_focal", alpha: float = 0.75, gamma: float = 2.0) -> None:
        super().__init__()
        if name not in LOSS_NAMES:
            raise ValueError(f"unknown event loss {name!r}; choose one of {list(LOSS_NAMES)}")
        self.name, self.alpha, self.gamma = name, alpha, gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
        if self.name == "soft_focal":
            return soft_focal_loss(logits, target, self.alpha, self.gamma)
        if self.name == "bce":
            return bce_loss(logits, target)
        if self.name == "dice":
            return dice_loss(logits, target)
        return bce_loss(logits, target) + dice_loss(logits, target)
