"""The layer shapes the inference rewrites know how to compute differently.

This is the only module of ``fast_cpu`` that reads segmentation_models_pytorch's internals
(its U-Net decoder classes and its ``Activation``/``Attention`` wrappers). Every lookup tolerates
another smp layout by recognising nothing, which leaves the network unchanged.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def is_plain_3x3(conv: nn.Module) -> bool:
    """An ``nn.Conv2d`` (not a subclass) with a 3x3 kernel, stride 1, zero padding 1, no dilation
    or groups: the shape the inference rewrites know how to compute differently."""
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


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


def unet_decoder_types() -> tuple[Any, Any] | None:
    """smp's ``(UnetDecoder, UnetDecoderBlock)`` classes, or None where smp lays them out otherwise."""
    try:
        from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder, UnetDecoderBlock
    except ImportError:
        return None
    return UnetDecoder, UnetDecoderBlock
