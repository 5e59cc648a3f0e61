"""Winograd F(4x4, 3x3): the same convolution with fewer multiplications, used only where it pays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_fibsem.core.models import create_model
from napari_fibsem.core.models.export import inference_module
from napari_fibsem.core.models.winograd import WinogradConv3x3, use_winograd, winograd_eligible


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


@pytest.mark.parametrize("shape", [(1, 1), (4, 4), (5, 7), (13, 21), (32, 48)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_matches_a_direct_convolution_on_any_size(shape, channels_last):
    torch.manual_seed(0)
    conv = nn.Conv2d(24, 40, 3, padding=1)
    wino = WinogradConv3x3(conv)
    x = torch.randn(2, 24, *shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want, got = conv(x), wino(x)
    assert got.shape == want.shape
    assert _rel_err(got, want) < 1e-4


def test_without_bias_and_after_a_weight_change_it_is_rebuilt_not_stale():
    torch.manual_seed(1)
    conv = nn.Conv2d(16, 16, 3, padding=1, bias=False)
    x = torch.randn(1, 16, 9, 11)
    with torch.no_grad():
        assert _rel_err(WinogradConv3x3(conv)(x), conv(x)) < 1e-4
        before = WinogradConv3x3(conv)
        conv.weight.mul_(-2.0)
        assert _rel_err(WinogradConv3x3(conv)(x), conv(x)) < 1e-4
        assert _rel_err(before(x), conv(x) / -2.0) < 1e-4  # a built copy holds the weights it was given


def test_only_plain_wide_3x3_stride_1_convolutions_are_eligible():
    wide = dict(in_channels=256, out_channels=256)
    assert winograd_eligible(nn.Conv2d(kernel_size=3, padding=1, **wide))
    assert not winograd_eligible(nn.Conv2d(kernel_size=3, padding=1, stride=2, **wide))
    assert not winograd_eligible(nn.Conv2d(kernel_size=3, padding=2, dilation=2, **wide))
    assert not winograd_eligible(nn.Conv2d(kernel_size=3, padding=1, groups=2, **wide))
    assert not winograd_eligible(nn.Conv2d(kernel_size=3, padding=0, **wide))
    assert not winograd_eligible(nn.Conv2d(kernel_size=1, **wide))
    assert not winograd_eligible(nn.Conv2d(kernel_size=3, padding=1, padding_mode="reflect", **wide))
    assert not winograd_eligible(nn.Conv2d(128, 128, 3, padding=1))  # narrow: the transforms cost more
    assert winograd_eligible(nn.Conv2d(128, 128, 3, padding=1), min_channels=128)
    with pytest.raises(ValueError, match="not a plain 3x3"):
        WinogradConv3x3(nn.Conv2d(8, 8, 3, padding=1, stride=2))


def test_resnet34_unet_predicts_the_same_with_and_without_it():
    """The default CPU model swaps the wide layers (encoder stages 3-4, first decoder block) and its
    probabilities stay within the 1e-3 the inference benchmark allows; ONNX export (the
    ``inference_module`` default) keeps plain convolutions."""
    torch.manual_seed(0)
    fast = create_model("Unet", "resnet34", device="cpu")
    plain = create_model("Unet", "resnet34", device="cpu", winograd=False)
    plain.torch_module.load_state_dict(fast.torch_module.state_dict())
    swapped = [m for m in fast._inference_net().modules() if isinstance(m, WinogradConv3x3)]
    assert len(swapped) >= 15
    assert all(m.in_channels >= 256 and m.out_channels >= 256 for m in swapped)
    assert not any(isinstance(m, WinogradConv3x3) for m in plain._inference_net().modules())
    assert not any(isinstance(m, WinogradConv3x3) for m in inference_module(fast.torch_module).modules())

    rng = np.random.default_rng(0)
    image = (rng.random((200, 296)) * 255).astype(np.uint8)
    a, b = fast.predict(image), plain.predict(image)
    assert np.abs(a.probs - b.probs).max() < 1e-3
    assert (a.mask == b.mask).mean() > 0.999


def test_use_winograd_counts_and_replaces_in_place():
    net = nn.Sequential(
        nn.Conv2d(1, 256, 3, padding=1),  # narrow input: stays
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(256, 256, 3, padding=1), nn.ReLU()),
        nn.Conv2d(256, 256, 3, padding=1, stride=2),  # strided: stays
    )
    x = torch.randn(1, 1, 10, 14)
    with torch.no_grad():
        want = net(x)
        assert use_winograd(net) == 1
        assert isinstance(net[2][0], WinogradConv3x3) and type(net[0]) is nn.Conv2d and type(net[3]) is nn.Conv2d
        assert _rel_err(net(x), want) < 1e-4
