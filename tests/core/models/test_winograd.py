"""Winograd F(4x4, 3x3): the same convolution with fewer multiplications, used only where it pays."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from torch import nn

from napari_fibsem.core.models import create_model
from napari_fibsem.core.models.fast_cpu import inference_module, winograd
from napari_fibsem.core.models.fast_cpu.winograd import WinogradConv3x3, use_winograd, winograd_eligible


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


needs_kernels = pytest.mark.skipif(winograd._kernels() is None, reason="numba kernels unavailable")


@pytest.mark.parametrize("shape", [(1, 1), (4, 4), (5, 7), (13, 21), (32, 48)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("path", ["kernels", "torch"])
def test_matches_a_direct_convolution_on_any_size(shape, channels_last, path):
    if path == "kernels" and winograd._kernels() is None:
        pytest.skip("numba kernels unavailable")
    torch.manual_seed(0)
    conv = nn.Conv2d(24, 40, 3, padding=1)
    wino = WinogradConv3x3(conv)
    x = torch.randn(2, 24, *shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want, got = conv(x), (wino(x) if path == "kernels" else wino._forward_torch(x))
    assert got.shape == want.shape
    assert _rel_err(got, want) < 1e-4


@needs_kernels
def test_kernels_in_steps_across_images_and_a_short_last_step(monkeypatch):
    """13x21 gives 4 tile rows of 6 tiles per image; steps of 3 tile rows over a batch of two
    cross from the first image into the second and end with a 2-row step."""
    torch.manual_seed(3)
    conv = nn.Conv2d(24, 40, 3, padding=1)
    wino = WinogradConv3x3(conv)
    x = torch.randn(2, 24, 13, 21).contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 3 * 36 * 6 * 40 * 4)
    with torch.inference_mode():
        want, got = conv(x), wino(x)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert _rel_err(got, want) < 1e-4


@needs_kernels
def test_kernels_from_several_threads_at_once():
    torch.manual_seed(4)
    conv = nn.Conv2d(64, 64, 3, padding=1)
    wino = WinogradConv3x3(conv)
    inputs = [torch.randn(1, 64, 40, 52).contiguous(memory_format=torch.channels_last) for _ in range(4)]
    with torch.inference_mode():
        wants = [conv(x) for x in inputs]

    def run(i):
        with torch.inference_mode():
            return [_rel_err(wino(inputs[i]), wants[i]) for _ in range(5)]

    with ThreadPoolExecutor(4) as pool:
        errors = [e for errs in pool.map(run, range(4)) for e in errs]
    assert max(errors) < 1e-4


def test_gradients_take_the_torch_path():
    torch.manual_seed(5)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    x = torch.randn(1, 8, 9, 10, requires_grad=True)
    y = WinogradConv3x3(conv)(x)
    y.square().sum().backward()
    want = torch.autograd.grad(conv(x).square().sum(), x)[0]
    assert y.requires_grad and _rel_err(x.grad, want) < 1e-4


def test_without_numba_only_the_widest_layers_qualify(monkeypatch):
    monkeypatch.setattr(winograd, "_kernels", lambda: None)
    assert winograd.default_min_channels() == winograd.MIN_CHANNELS_TORCH
    assert not winograd_eligible(nn.Conv2d(128, 128, 3, padding=1))
    conv = nn.Conv2d(16, 16, 3, padding=1)
    x = torch.randn(1, 16, 11, 9)
    with torch.inference_mode():
        assert _rel_err(WinogradConv3x3(conv)(x), conv(x)) < 1e-4


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
    assert not winograd_eligible(nn.Conv2d(32, 32, 3, padding=1))  # narrow: the transforms cost more
    assert not winograd_eligible(nn.Conv2d(32, 32, 3, padding=1), min_channels=64)
    assert winograd_eligible(nn.Conv2d(128, 128, 3, padding=1), min_channels=128)
    n = winograd.default_min_channels()
    assert winograd_eligible(nn.Conv2d(n, n, 3, padding=1)) and not winograd_eligible(nn.Conv2d(n - 1, n, 3, padding=1))
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
    n = winograd.default_min_channels()
    assert all(m.in_channels >= n and m.out_channels >= n for m in swapped)
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
