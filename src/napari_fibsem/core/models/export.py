"""Inference-only rewrites of smp networks, and ONNX export with the model's metadata inside.

Two exact rewrites make the same weights cheaper to run (both change only float rounding):

* BatchNorm after a convolution is folded into that convolution's weights and bias.
* A U-Net decoder block convolves ``cat[upsample_x2(x), skip]`` with a 3x3 kernel. On the
  nearest-upsampled half, each of the four output phases only ever sees a 2x2 neighbourhood of
  ``x``, so that half becomes one stride-2 transposed convolution of the *low*-resolution input:
  4 instead of 9 multiply-adds per output pixel and input channel, and the upsampled and
  concatenated tensors are never built. This is ~11% of a resnet34 U-Net's arithmetic.

:func:`inference_module` applies both and checks the result against the original on a probe
input, so an architecture it does not understand is returned unchanged rather than wrong.
:func:`export_onnx` writes that module (dynamic batch/height/width, logits out) with the class
map, normalisation, architecture, encoder and stride stored as JSON in ``metadata_props``.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from napari_fibsem.core._optional import require
from napari_fibsem.core.io.atomic import atomic_path
from napari_fibsem.core.models.bundle import BundleMetadata
from napari_fibsem.core.models.onnx_backend import METADATA_KEY
from napari_fibsem.core.models.winograd import is_plain_3x3, use_winograd

ONNX_FORMAT_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17
_PROBE_TOL = 1e-3  # relative to the logits' range; rounding differences are ~1e-6


# -- BatchNorm folding -------------------------------------------------------------------------
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv equal to ``bn(conv(x))`` in eval mode."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device, conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(conv.weight.detach() * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    # Exact types only: subclasses such as timm's BatchNormAct2d also apply an activation.
    return (
        type(conv) is nn.Conv2d
        and type(bn) is nn.BatchNorm2d
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.affine
        and conv.out_channels == bn.num_features
    )


def fold_batchnorm(module: nn.Module) -> int:
    """Fold BatchNorm2d into the preceding Conv2d, in place (eval semantics); returns how many.

    Two patterns where "preceding" is certain: consecutive items of an ``nn.Sequential`` (smp's
    ``Conv2dReLU``, torchvision downsample branches) and torchvision ResNet blocks, whose forward
    is ``bnN(convN(x))`` for each ``convN``/``bnN`` pair.
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    count = 0
    for parent in list(module.modules()):
        if isinstance(parent, nn.Sequential):
            names = list(parent._modules)
            for a, b in zip(names[:-1], names[1:]):
                conv, bn = parent._modules[a], parent._modules[b]
                if _foldable(conv, bn):
                    parent._modules[a] = _fold(conv, bn)
                    parent._modules[b] = nn.Identity()
                    count += 1
        if isinstance(parent, (ResNet, BasicBlock, Bottleneck)):
            for i in (1, 2, 3):
                conv, bn = getattr(parent, f"conv{i}", None), getattr(parent, f"bn{i}", None)
                if conv is not None and bn is not None and _foldable(conv, bn):
                    setattr(parent, f"conv{i}", _fold(conv, bn))
                    setattr(parent, f"bn{i}", nn.Identity())
                    count += 1
    return count


# -- polyphase U-Net decoder -------------------------------------------------------------------
# Per axis, output row 2i of a 3-tap kernel (k0, k1, k2) over a nearest-x2 upsampled signal sees
# x[i-1], x[i], x[i] and row 2i+1 sees x[i], x[i], x[i+1]. A transposed convolution with stride 2,
# padding 1 and the 4-tap kernel (k2, k1+k2, k0+k1, k0) produces exactly those sums. (A 2x2
# convolution plus pixel shuffle is the same arithmetic; ONNX Runtime and OpenVINO run the
# transposed convolution faster than the shuffle.)
_PHASE_TAPS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def passes_through(module: nn.Module) -> bool:
    """``nn.Identity``, or smp's ``Attention`` / ``Activation`` wrapper around one (what a U-Net
    block or head holds when no attention or activation was asked for)."""
    if isinstance(module, nn.Identity):
        return True
    try:
        from segmentation_models_pytorch.base.modules import Activation, Attention
    except ImportError:  # another smp layout: only plain layers qualify
        return False
    inner = {Activation: "activation", Attention: "attention"}.get(type(module))
    return inner is not None and isinstance(getattr(module, inner, None), nn.Identity)


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


def _polyphase_unet(module: nn.Module) -> int:
    """Swap smp U-Net decoder blocks for :class:`PolyphaseUnetBlock` in place; returns how many."""
    try:
        from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder, UnetDecoderBlock
    except ImportError:  # another smp layout: leave the network as it is
        return 0
    decoder = getattr(module, "decoder", None)
    encoder = getattr(module, "encoder", None)
    if not isinstance(decoder, UnetDecoder) or not hasattr(encoder, "out_channels"):
        return 0
    count = 0
    channels = int(encoder.out_channels[-1])  # the centre block (if any) keeps this width
    for i, block in enumerate(decoder.blocks):
        conv = block.conv1[0] if isinstance(getattr(block, "conv1", None), nn.Sequential) else None
        ok = (
            type(block) is UnetDecoderBlock
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


def inference_module(
    module: nn.Module, probe_size: int = 64, check: bool = True, winograd: bool = False, bands: bool = False
) -> nn.Module:
    """An eval-mode copy of ``module`` with BatchNorm folded and U-Net decoders made polyphase;
    with ``winograd``, wide 3x3 convolutions also become :class:`WinogradConv3x3`, and with
    ``bands`` a U-Net's full-resolution end runs in bands of rows
    (:class:`~napari_fibsem.core.models.banded.BandedUnet`). Both are for CPU torch only: ONNX
    exports and GPUs keep plain convolutions, which their runtimes optimise themselves.

    With ``check``, the copy is compared with the original on a random ``probe_size``-square
    input; if they disagree (an architecture whose structure these rewrites misread), a plain
    eval-mode copy is returned instead, with a warning.
    """
    original = copy.deepcopy(module).eval()
    fused = copy.deepcopy(original)
    fold_batchnorm(fused)
    _polyphase_unet(fused)
    if winograd:
        use_winograd(fused)
    if bands:
        from napari_fibsem.core.models.banded import BandedUnet, banded_unet

        fused = banded_unet(fused) or fused
    if not check:
        return fused
    param = next(original.parameters(), None)
    in_ch = _first_conv_in_channels(original)
    device = param.device if param is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, in_ch, probe_size, probe_size, generator=gen).to(device)
    probe = fused
    if bands and isinstance(fused, BandedUnet):  # many thin bands, so the probe crosses band edges
        probe = BandedUnet(fused.model, fused.halo, band_rows=1)
    try:
        with torch.inference_mode():
            ref, got = original(x), probe(x)
    except Exception as e:  # e.g. an encoder that needs a larger input than the probe
        problem = f"could not be checked on a {probe_size}x{probe_size} input ({type(e).__name__}: {e})"
    else:
        scale = float(ref.abs().max()) + 1e-6
        err = float((ref - got).abs().max())
        if err <= _PROBE_TOL * scale:
            return fused
        problem = f"changed this network's output (max diff {err:.3g} of {scale:.3g})"
    warnings.warn(f"inference rewrites {problem}; using the network unchanged", RuntimeWarning, stacklevel=2)
    return original


def _first_conv_in_channels(module: nn.Module) -> int:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return 1


class _GrayscaleLogits(nn.Module):
    """The exported graph: ``N x 1 x H x W`` in, ``N x C x H x W`` float32 logits out."""

    def __init__(self, module: nn.Module, in_channels: int) -> None:
        super().__init__()
        self.module = module
        self.in_channels = in_channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.in_channels != 1:
            image = image.expand(-1, self.in_channels, -1, -1)
        return self.module(image)


# -- ONNX export --------------------------------------------------------------------------------
def onnx_metadata(model: Any) -> dict[str, Any]:
    """The JSON stored under :data:`METADATA_KEY`: bundle metadata plus what ONNX loading needs."""
    meta: BundleMetadata = model.current_metadata()
    meta = dataclasses.replace(meta, backend="onnx", source_format="onnx")
    data = meta.to_dict()
    data.update(
        onnx_format_version=ONNX_FORMAT_VERSION,
        stride=int(model.stride),
        output="logits",
        input_name=INPUT_NAME,
        source_architecture=model.metadata.architecture,
    )
    return data


def export_onnx(
    model: Any,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    optimize: bool = True,
    sample_size: int | None = None,
) -> Path:
    """Write ``model`` (an :class:`~napari_fibsem.core.models.smp_backend.SmpModel`) as ONNX, atomically.

    The graph takes ``N x 1 x H x W`` float32 (normalised like the model's own input, with H and
    W multiples of the stride) and returns logits; the ONNX backend applies softmax afterwards
    (ONNX Runtime's channel softmax is ~15% of a resnet34 U-Net's time, numpy's ~1%). Batch,
    height and width are dynamic. ``optimize`` exports :func:`inference_module`'s rewrite.
    ``load_model(path)`` then restores the class map, normalisation and stride.
    """
    onnx = require("onnx", "onnx")
    path = Path(path)
    module = model.torch_module
    was_training = module.training
    net = inference_module(module) if optimize else copy.deepcopy(module).eval()
    module.train(was_training)
    net = net.to("cpu").to(memory_format=torch.contiguous_format)
    wrapper = _GrayscaleLogits(net, int(model.metadata.in_channels)).eval()
    size = sample_size or 2 * int(model.stride)
    sample = torch.zeros(1, 1, size, size)
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        # the TorchScript exporter is the one that needs no extra package (onnxscript); its
        # deprecation and tracer notes are not the user's concern
        warnings.simplefilter("ignore")
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                wrapper,
                (sample,),
                buffer,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
                opset_version=int(opset),
                do_constant_folding=True,
                dynamo=False,
            )
    proto = onnx.load_from_string(buffer.getvalue())
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(onnx_metadata(model))
    proto.producer_name = "napari-fibsem"
    proto.doc_string = (
        f"{model.metadata.architecture}/{model.metadata.encoder} segmentation, "
        f"classes {model.class_map.names}; input N x 1 x H x W normalised, output logits"
    )
    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return path
