"""The entry point: a checked, rewritten inference copy of a network."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from napari_fibsem.core.models.fast_cpu.banded import BandedUnet, banded_unet
from napari_fibsem.core.models.fast_cpu.fold import fold_batchnorm
from napari_fibsem.core.models.fast_cpu.polyphase import polyphase_unet
from napari_fibsem.core.models.fast_cpu.winograd import use_winograd

_PROBE_TOL = 1e-3  # relative to the logits' range; rounding differences are ~1e-6


def inference_module(
    module: nn.Module, probe_size: int = 64, check: bool = True, winograd: bool = False, bands: bool = False
) -> nn.Module:
    """An eval-mode copy of ``module`` with BatchNorm folded and U-Net decoders made polyphase;
    with ``winograd``, wide 3x3 convolutions also become
    :class:`~napari_fibsem.core.models.fast_cpu.winograd.WinogradConv3x3`, and with ``bands`` a
    U-Net's full-resolution end runs in bands of rows
    (:class:`~napari_fibsem.core.models.fast_cpu.banded.BandedUnet`). Both are for CPU torch only:
    ONNX exports and GPUs keep plain convolutions, which their runtimes optimise themselves.

    With ``check``, the copy is compared with the original on a random ``probe_size``-square
    input; if they disagree (an architecture whose structure these rewrites misread), a plain
    eval-mode copy is returned instead, with a warning.
    """
    original = copy.deepcopy(module).eval()
    fused = copy.deepcopy(original)
    fold_batchnorm(fused)
    polyphase_unet(fused)
    if winograd:
        use_winograd(fused)
    if bands:
        fused = banded_unet(fused) or fused
    if not check:
        return fused
    param = next(original.parameters(), None)
    in_ch = _first_conv_in_channels(original)
    device = param.device if param is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, in_ch, probe_size, probe_size, generator=gen).to(device)
    probe = fused
    if isinstance(fused, BandedUnet):  # many thin bands, so the probe crosses band edges
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
