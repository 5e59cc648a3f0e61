"""U-Net decoder blocks computed polyphase: no upsampled or concatenated tensor is ever built.

A U-Net decoder block convolves ``cat[upsample_x2(x), skip]`` with a 3x3 kernel. On the
nearest-upsampled half, each of the four output phases only ever sees a 2x2 neighbourhood of
``x``, so that half becomes one stride-2 transposed convolution of the *low*-resolution input:
4 instead of 9 multiply-adds per output pixel and input channel. This is ~11% of a resnet34
U-Net's arithmetic, and only float rounding changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_fibsem.core.models.fast_cpu.layers import is_plain_3x3, passes_through, unet_decoder_types

# Per axis, output row 2i of a 3-tap kernel (k0, k1, k2) over a nearest-x2 upsampled signal sees
# x[i-1], x[i], x[i] and row 2i+1 sees x[i], x[i], x[i+1]. A transposed convolution with stride 2,
# padding 1 and the 4-tap kernel (k2, k1+k2, k0+k1, k0) produces exactly those sums. (A 2x2
# convolution plus pixel shuffle is the same arithmetic; ONNX Runtime and OpenVINO run the
# transposed convolution faster than the shuffle.)
_PHASE_TAPS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


class PolyphaseUpConv(nn.Module):
    """``conv3x3(cat[upsample_nearest_x2(x), skip])`` without building the upsampled tensor."""

    def __init__(self, conv: nn.Conv2d, up_channels: int) -> None:
        super().__init__()
        w = conv.weight.detach()
        taps = _PHASE_TAPS.to(w.device, w.dtype)
        # conv_transpose2d weights are (in, out, kh, kw)
        up = torch.einsum("yk,xl,ockl->coyx", taps, taps, w[:, :up_channels])
        self.up_weight = nn.Parameter(up.contiguous())
        bias = conv.bias.detach().clone() if conv.bias is not None else None
        self.skip_conv: nn.Module | None = None  # an nn.Conv2d, so later rewrites (Winograd) see it
        if w.shape[1] > up_channels:
            skip_in = w.shape[1] - up_channels
            self.skip_conv = nn.Conv2d(
                skip_in, w.shape[0], 3, padding=1, bias=bias is not None, device=w.device, dtype=w.dtype
            )
            with torch.no_grad():
                self.skip_conv.weight.copy_(w[:, up_channels:])
                if bias is not None:
                    self.skip_conv.bias.copy_(bias)
            bias = None
        self.bias = nn.Parameter(bias) if bias is not None else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        if self.skip_conv is None:
            return F.conv_transpose2d(x, self.up_weight, self.bias, stride=2, padding=1)
        up = F.conv_transpose2d(x, self.up_weight, None, stride=2, padding=1)
        out = self.skip_conv(skip)
        return out.add_(up) if not out.requires_grad else out + up


class PolyphaseUnetBlock(nn.Module):
    """Drop-in for smp's ``UnetDecoderBlock`` (nearest x2, no attention before conv1)."""

    def __init__(self, block: nn.Module, up_channels: int) -> None:
        super().__init__()
        self.upconv = PolyphaseUpConv(block.conv1[0], up_channels)
        self.post = nn.Sequential(*list(block.conv1)[1:])  # norm (Identity once folded), ReLU
        self.conv2 = block.conv2
        self.attention2 = block.attention2
        self.original = block  # for steps that are not exactly x2 (never hit on stride-padded input)

    def forward(
        self,
        feature_map: torch.Tensor,
        target_height: int,
        target_width: int,
        skip_connection: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h, w = feature_map.shape[-2:]
        if target_height != 2 * h or target_width != 2 * w:
            return self.original(feature_map, target_height, target_width, skip_connection)
        x = self.post(self.upconv(feature_map, skip_connection))
        return self.attention2(self.conv2(x))


def polyphase_unet(module: nn.Module) -> int:
    """Swap smp U-Net decoder blocks for :class:`PolyphaseUnetBlock` in place; returns how many."""
    types = unet_decoder_types()
    if types is None:  # another smp layout: leave the network as it is
        return 0
    unet_decoder, unet_block = types
    decoder = getattr(module, "decoder", None)
    encoder = getattr(module, "encoder", None)
    if not isinstance(decoder, unet_decoder) or not hasattr(encoder, "out_channels"):
        return 0
    count = 0
    channels = int(encoder.out_channels[-1])  # the centre block (if any) keeps this width
    for i, block in enumerate(decoder.blocks):
        conv = block.conv1[0] if isinstance(getattr(block, "conv1", None), nn.Sequential) else None
        ok = (
            type(block) is unet_block
            and block.interpolation_mode == "nearest"
            and passes_through(block.attention1)
            and is_plain_3x3(conv)
            and conv.in_channels >= channels
        )
        if ok:
            decoder.blocks[i] = PolyphaseUnetBlock(block, channels)
            count += 1
        channels = int(block.conv2[0].out_channels) if isinstance(block.conv2, nn.Sequential) else -1
        if channels < 0:
            break
    return count
