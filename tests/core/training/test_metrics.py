"""Confusion-matrix metrics and the segmentation losses, on inputs small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.training import LossConfig, SegmentationLoss, compute_metrics, confusion_matrix
from napari_fibsem.core.training.losses import IGNORE, dice_loss, focal_loss

CLASSES = ClassMap.from_names(["background", "lamella", "needle", "post"])


def test_confusion_matrix_counts_and_skips_ignored_pixels():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, IGNORE, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 3, 1]])
    cm = confusion_matrix(pred, target, 4)
    expected = np.zeros((4, 4), int)
    for t, p in [(0, 0), (0, 1), (1, 1), (1, 1), (2, 2), (2, 0), (1, 1)]:
        expected[t, p] += 1
    np.testing.assert_array_equal(cm.numpy(), expected)


def test_iou_dice_accuracy_from_the_matrix():
    cm = np.array([
        [50, 5, 0, 0],   # background
        [5, 10, 0, 0],   # lamella
        [0, 0, 0, 0],    # needle: absent from labels and predictions
        [0, 0, 0, 0],    # post: absent from labels, never predicted
    ])  # fmt: skip
    m = compute_metrics(cm, CLASSES)
    assert m.iou["background"] == pytest.approx(50 / 60)
    assert m.iou["lamella"] == pytest.approx(10 / 20)
    assert m.iou["needle"] is None and m.iou["post"] is None  # undefined, not 0 or 1
    assert m.dice["lamella"] == pytest.approx(20 / 30)
    assert m.pixel_accuracy == pytest.approx(60 / 70)
    assert m.mean_fg_iou == pytest.approx(0.5)  # only lamella counts
    assert m.mean_iou == pytest.approx((50 / 60 + 0.5) / 2)
    d = m.to_dict()
    assert d["iou/needle"] is None and d["mean_fg_dice"] == pytest.approx(20 / 30)


def test_false_positives_of_an_absent_class_count():
    cm = np.array([[8, 0, 2, 0], [0, 4, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    m = compute_metrics(torch.from_numpy(cm), CLASSES)
    assert m.iou["needle"] == 0.0  # predicted but never labelled
    assert m.mean_fg_iou == pytest.approx((1.0 + 0.0) / 2)


def test_perfect_prediction_scores_one():
    target = torch.randint(0, 4, (2, 16, 16))
    m = compute_metrics(confusion_matrix(target, target, 4), CLASSES)
    assert m.pixel_accuracy == 1.0 and m.mean_iou == 1.0 and m.mean_fg_iou == 1.0


def test_cross_entropy_term_matches_torch_and_ignores_padding():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    target[:, :3] = IGNORE
    ce_only = SegmentationLoss(LossConfig(ce=1, dice=0))
    assert ce_only(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target, ignore_index=IGNORE).item(), rel=1e-6
    )
    weights = [1.0, 2.0, 0.5, 3.0]
    weighted = SegmentationLoss(LossConfig(ce=1, dice=0), class_weights=weights)
    ref = F.cross_entropy(logits, target, weight=torch.tensor(weights), ignore_index=IGNORE)
    assert weighted(logits, target).item() == pytest.approx(ref.item(), rel=1e-5)


def test_dice_and_focal_behave():
    target = torch.randint(0, 4, (2, 8, 8))
    perfect = F.one_hot(target, 4).permute(0, 3, 1, 2).float() * 30
    assert dice_loss(perfect, target).item() < 1e-3
    assert dice_loss(-perfect, target).item() > 0.9
    assert focal_loss(perfect, target).item() < 1e-6
    logits = torch.randn(2, 4, 8, 8)
    assert (
        focal_loss(logits, target).item() < F.cross_entropy(logits, target).item()
    )  # easy pixels down-weighted
    everything_ignored = torch.full_like(target, IGNORE)
    assert SegmentationLoss(LossConfig(focal=1))(logits, everything_ignored).item() == 0.0


def test_losses_backpropagate_and_check_weight_count():
    logits = torch.randn(1, 4, 8, 8, requires_grad=True)
    target = torch.randint(0, 4, (1, 8, 8))
    SegmentationLoss(LossConfig(ce=1, dice=1, focal=0.5))(logits, target).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="3 class weights for a network with 4 outputs"):
        SegmentationLoss(class_weights=[1, 1, 1])(logits, target)
