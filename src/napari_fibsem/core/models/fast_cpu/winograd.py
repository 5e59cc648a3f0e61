"""Winograd F(4x4, 3x3) for the 3x3 convolutions of a network on the CPU.

Exact float32 convolutions already run at about the two cores' peak here, so the only way to a
faster forward pass with the same numbers is fewer multiplications. Winograd's minimal filtering
computes each 4x4 output tile of a 3x3 stride-1 convolution from a 6x6 input tile with 36
products per channel pair instead of 144: input tiles go through ``B^T d B``, the filters through
``G g G^T`` (once, at build time), the 36 tile positions become 36 batched matrix products
(tiles x C_in by C_in x C_out) and ``A^T m A`` gives the output tile back.

The transforms are memory-bound. With the numba kernels (``_winograd_kernels.py``, numba from
the extra ``fast``, a few tile rows at a time) a layer costs, on 2 cores, 21 ms against 32 ms
direct at 64 channels and 256x384, 15 against 32 at 128 channels and 128x192, 13.5 against 32
at 256 and 64x96; 32 channels lose, hence :data:`MIN_CHANNELS`. Without numba the transforms are torch operations
(a tile-gathering copy and a 36x36 matrix product), which pay only from 256 channels. Rounding
differs from a direct convolution by ~1e-5 relative; the inference copy that uses it is still
checked against the original network.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_fibsem.core.models.fast_cpu.layers import is_plain_3x3

_BT = torch.tensor(
    [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
     [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float64,
)  # fmt: skip
_G = torch.tensor(
    [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
     [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64,
)  # fmt: skip
_AT = torch.tensor(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=torch.float64
)

MIN_CHANNELS = 64
"""Narrower layers stay direct convolutions: with the numba transforms 64 channels at 256x384
take 21 ms against 32 ms direct, 32 channels lose (52 vs 48 ms)."""
MIN_CHANNELS_TORCH = 256
"""The same limit when numba is missing and the transforms are torch operations (128 breaks even)."""
CHUNK_BYTES = 4 << 20
"""Tile rows per step so the transformed input of one step is about this big (stays in cache)."""


@functools.cache
def _kernels() -> Any:
    """The numba transform kernels, or None where numba is not installed (extra ``fast``) or its
    OpenMP thread pool cannot start (then the torch transforms run, and only on the widest layers)."""
    try:
        from napari_fibsem.core.models.fast_cpu import _winograd_kernels

        return _winograd_kernels.load()
    except Exception as e:  # noqa: BLE001 (ImportError, or numba's error for a missing thread layer)
        warnings.warn(f"Winograd numba kernels unavailable, using torch transforms ({e})", RuntimeWarning, stacklevel=2)
        return None


def default_min_channels() -> int:
    """The narrowest layer Winograd pays for with the transforms this install has."""
    return MIN_CHANNELS if _kernels() is not None else MIN_CHANNELS_TORCH


def winograd_eligible(conv: nn.Module, min_channels: int | None = None) -> bool:
    """A plain 3x3 float convolution at least ``min_channels`` wide both ways (None: the
    :func:`default_min_channels`)."""
    if min_channels is None:
        min_channels = default_min_channels()
    return (
        is_plain_3x3(conv)
        and conv.in_channels >= min_channels
        and conv.out_channels >= min_channels
        and conv.weight.is_floating_point()
    )


class WinogradConv3x3(nn.Module):
    """Inference-only stand-in for a :func:`winograd_eligible` ``nn.Conv2d`` (same inputs, same outputs).

    The output is channels-last in memory (an NCHW view), as the CPU inference copy runs.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not winograd_eligible(conv, min_channels=1):
            raise ValueError(f"not a plain 3x3 stride-1 padding-1 convolution: {conv}")
        w = conv.weight.detach()
        k, c = w.shape[:2]
        g = _G.to(w)
        rows = g @ w.permute(2, 0, 1, 3).reshape(3, -1)  # G g for every filter at once: 6 x (k c 3)
        u = (rows.reshape(6 * k * c, 3) @ g.T).reshape(6, k, c, 6).permute(0, 3, 2, 1)  # G g G^T: 6, 6, c, k
        self.in_channels, self.out_channels = c, k
        self.register_buffer("u", u.reshape(36, c, k).contiguous())
        self.register_buffer("kb", torch.kron(_BT, _BT).to(w))  # 36 x 36, acts on a flattened 6x6 tile
        self.register_buffer("ka", torch.kron(_AT, _AT).to(w))  # 16 x 36
        bias = conv.bias.detach().clone() if conv.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernels = _kernels() if x.device.type == "cpu" and x.dtype == torch.float32 else None
        if kernels is not None and not (torch.is_grad_enabled() and x.requires_grad):
            return self._forward_kernels(x, kernels)
        return self._forward_torch(x)

    def _forward_kernels(self, x: torch.Tensor, kernels: Any) -> torch.Tensor:
        """The numba transforms, a few tile rows at a time (see ``_winograd_kernels``)."""
        n, c, h, w = x.shape
        k = self.out_channels
        th, tw = -(-h // 4), -(-w // 4)
        src = x.detach().permute(0, 2, 3, 1).contiguous().numpy()  # NHWC; no copy when channels-last
        y = torch.empty((n, k, h, w), dtype=x.dtype, memory_format=torch.channels_last)
        dst = y.permute(0, 2, 3, 1).numpy()
        bias = self.bias.numpy() if self.bias is not None else np.zeros(k, np.float32)
        step = max(1, CHUNK_BYTES // (36 * tw * max(c, k) * 4))
        total = n * th
        step = min(step, total)
        v_store = torch.empty(36 * step * tw * c, dtype=x.dtype)  # reused by every step
        m_store = torch.empty(36 * step * tw * k, dtype=x.dtype)
        with kernels.threads(torch.get_num_threads()):
            for row0 in range(0, total, step):
                row1 = min(row0 + step, total)
                tiles = (row1 - row0) * tw
                v = v_store[: 36 * tiles * c].view(36, tiles, c)  # contiguous for a short last step too
                m = m_store[: 36 * tiles * k].view(36, tiles, k)
                kernels.input_transform(src, row0, row1, tw, v.numpy())
                torch.bmm(v, self.u, out=m)
                kernels.output_transform(m.numpy(), bias, row0, row1, tw, dst)
        return y

    def _forward_torch(self, x: torch.Tensor) -> torch.Tensor:
        """The same arithmetic in torch operations (GPU tensors, or numba missing)."""
        n, c, h, w = x.shape
        th, tw = -(-h // 4), -(-w // 4)
        nhwc = x.permute(0, 2, 3, 1)  # a view when x is channels-last
        padded = F.pad(nhwc, (0, 0, 1, 4 * tw + 1 - w, 1, 4 * th + 1 - h))
        tiles = padded.unfold(1, 6, 4).unfold(2, 6, 4)  # n, th, tw, C, 6, 6 (overlapping views)
        d = tiles.permute(4, 5, 0, 1, 2, 3).reshape(36, -1)  # 36 x (tiles * C)
        v = (self.kb @ d).view(36, n * th * tw, c)
        m = torch.bmm(v, self.u)  # 36 x tiles x C_out
        k = self.out_channels
        y = (self.ka @ m.view(36, -1)).view(4, 4, n, th, tw, k)
        y = y.permute(2, 3, 0, 4, 1, 5).reshape(n, 4 * th, 4 * tw, k)[:, :h, :w]
        y = y + self.bias if self.bias is not None else y.contiguous()
        return y.permute(0, 3, 1, 2)


def use_winograd(module: nn.Module, min_channels: int | None = None) -> int:
    """Replace every eligible ``nn.Conv2d`` inside ``module`` in place; returns how many."""
    swaps = [
        (parent, name, child)
        for parent in module.modules()
        for name, child in parent.named_children()
        if winograd_eligible(child, min_channels)
    ]
    for parent, name, child in swaps:
        setattr(parent, name, WinogradConv3x3(child))
    return len(swaps)
