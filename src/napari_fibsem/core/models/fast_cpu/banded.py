"""Run the full-resolution end of a U-Net in horizontal bands, softmax included.

The last two decoder blocks and the head of a U-Net work on the largest tensors of the whole
pass (16-32 channels at the input's full and half resolution: 50-100 MB each for a 1024x1536
frame) while doing little arithmetic per byte. Each such tensor is a fresh allocation above
glibc's mmap threshold, so every pass page-faults it in again: on 2 cores those faults cost about
as much as the convolutions themselves (a 16->16 3x3 convolution at 1024x1536 takes 61 ms with
its output faulted in, 36 ms without). Computed a few dozen rows at a time, the same layers work
on tensors of a few MB that the allocator reuses and the caches hold.

Each band is a slab of the tail's input (the last decoder block computed in full) widened by a
halo of rows on both sides; the rows the zero padding at a slab's cut edges could reach are
dropped, so every kept row is computed from exactly the inputs it has in the full pass (at the
image's own top and bottom the slab ends where the image does, with the same padding). Only the
layer types whose reach is known take part (:func:`banded_unet` checks), and the results agree
with the unbanded pass to float rounding.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from napari_fibsem.core.models.fast_cpu.layers import is_plain_3x3, passes_through
from napari_fibsem.core.models.fast_cpu.polyphase import PolyphaseUnetBlock

TAIL_BLOCKS = 2
"""Decoder blocks run in bands: the two at half and full resolution."""
BAND_BYTES = 12 << 20
"""Target size of the largest tensor in a band: well under glibc's 32 MB mmap threshold (so the
allocator reuses the memory) and small enough to stay in this CPU's 32 MB L3 cache."""


def _rows_reached(module: nn.Module) -> int | None:
    """How many rows beyond its input's edge a layer of a tail block reads (None: unknown layer)."""
    if isinstance(module, nn.ReLU) or passes_through(module):
        return 0
    if is_plain_3x3(module):
        return 1
    one_by_one = (1, 1), (1, 1), (0, 0)
    if type(module) is nn.Conv2d and (module.kernel_size, module.stride, module.padding) == one_by_one:
        return 0
    return None


def _layers(module: nn.Module) -> list[nn.Module]:
    return list(module) if isinstance(module, nn.Sequential) else [module]


def _plain_sequence(module: nn.Module) -> bool:
    return all(_rows_reached(m) is not None for m in _layers(module))


def _block_ok(block: nn.Module) -> bool:
    return (
        isinstance(block, PolyphaseUnetBlock)
        and passes_through(block.attention2)
        and _plain_sequence(block.post)
        and _plain_sequence(block.conv2)
    )


def _head_reach(head: nn.Module) -> int | None:
    """Rows a segmentation head reads beyond its input's edge; None for heads that upsample,
    pool or apply anything but an identity activation."""
    reach = [_rows_reached(layer) for layer in _layers(head)]
    return None if None in reach else sum(reach)


class BandedUnet(nn.Module):
    """An inference copy of an smp U-Net (already folded and polyphase) whose last
    decoder blocks and head run in bands of rows; ``probabilities`` also applies the softmax
    per band and writes straight into the returned NCHW array."""

    def __init__(self, model: nn.Module, halo: int, band_rows: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.halo = halo
        self.band_rows = band_rows  # rows of the tail's input per band; None: sized by BAND_BYTES
        self.split = len(model.decoder.blocks) - TAIL_BLOCKS

    # -- the pass -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, like the wrapped model."""
        return self._run(x, softmax=False)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """``softmax(logits, dim=1)`` as a contiguous NCHW float32 tensor."""
        return self._run(x, softmax=True)

    def _run(self, x: torch.Tensor, softmax: bool) -> torch.Tensor:
        model, decoder = self.model, self.model.decoder
        features = model.encoder(x)
        shapes = [tuple(f.shape[-2:]) for f in features][::-1]  # deepest first, as smp's decoder
        deep = features[1:][::-1]
        skips = [*deep[1:], *([None] * len(decoder.blocks))]
        tail = range(self.split, len(decoder.blocks))
        if any(shapes[i + 1] != (2 * shapes[i][0], 2 * shapes[i][1]) for i in tail):
            logits = model.segmentation_head(decoder(features))  # not a stride-padded input: no bands
            return torch.softmax(logits, dim=1).contiguous() if softmax else logits
        y = decoder.center(deep[0])
        for i, block in enumerate(decoder.blocks[: self.split]):
            y = block(y, *shapes[i + 1], skips[i])
        tail_skips = [skips[i] for i in tail]
        n, _, rows, cols = y.shape
        scale = 2**TAIL_BLOCKS
        step = self.band_rows or self._auto_band_rows(cols * scale)
        out = None
        for a in range(0, rows, step):
            b = min(a + step, rows)
            top, bottom = max(a - self.halo, 0), min(b + self.halo, rows)
            band = self._tail(y, tail_skips, top, bottom)[:, :, (a - top) * scale : (b - top) * scale]
            if softmax:
                band = torch.softmax(band, dim=1)
            if out is None:
                fmt = torch.contiguous_format if softmax else torch.channels_last
                shape = (n, band.shape[1], rows * scale, band.shape[-1])
                out = torch.empty(shape, dtype=band.dtype, device=band.device, memory_format=fmt)
            out[:, :, a * scale : b * scale] = band
        assert out is not None
        return out

    def _tail(self, y: torch.Tensor, skips: list[torch.Tensor | None], top: int, bottom: int) -> torch.Tensor:
        """Tail blocks and head on rows ``top:bottom`` of ``y`` (with the matching skip rows)."""
        z = y[:, :, top:bottom]
        for j, block in enumerate(self.model.decoder.blocks[self.split :]):
            scale = 2 ** (j + 1)
            skip = skips[j]
            if skip is not None:
                skip = skip[:, :, top * scale : bottom * scale]
            z = block(z, 2 * z.shape[-2], 2 * z.shape[-1], skip)
        return self.model.segmentation_head(z)

    def _auto_band_rows(self, full_width: int) -> int:
        """Rows of the tail's input per band so the widest full-resolution tensor fits BAND_BYTES,
        and never fewer than four halos (the recomputed rows stay under a third of the work)."""
        channels = max(int(_layers(b.conv2)[0].out_channels) for b in self.model.decoder.blocks[self.split :])
        per_row = (2**TAIL_BLOCKS) * full_width * channels * 4
        return max(4 * self.halo, BAND_BYTES // per_row, 1)


def banded_unet(model: nn.Module, band_rows: int | None = None) -> nn.Module | None:
    """Wrap an inference copy of an smp U-Net in :class:`BandedUnet`; None when its tail holds a
    layer whose reach is not known here (attention, upsampling heads, other block types)."""
    decoder = getattr(model, "decoder", None)
    blocks = getattr(decoder, "blocks", None)
    head = getattr(model, "segmentation_head", None)
    if blocks is None or head is None or len(blocks) < TAIL_BLOCKS or not hasattr(model, "encoder"):
        return None
    if getattr(model, "classification_head", None) is not None:
        return None
    tail = list(blocks)[-TAIL_BLOCKS:]
    head_reach = _head_reach(head)
    if head_reach is None or not all(_block_ok(b) for b in tail):
        return None
    # Rows wrong next to a slab's cut edge, counted at each block's output resolution: the
    # polyphase up-convolution turns c wrong input rows into 2c + 1 (the +1 from the padding
    # row), and every later 3x3 convolution adds one.
    wrong = 0
    for block in tail:
        wrong = 2 * wrong + 1
        wrong += sum(_rows_reached(m) or 0 for m in _layers(block.post) + _layers(block.conv2))
    wrong += head_reach
    halo = math.ceil(wrong / 2**TAIL_BLOCKS)
    return BandedUnet(model, halo, band_rows)
