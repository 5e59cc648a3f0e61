"""Data-parallel event training inside one process: its share of each epoch, the DDP wrapper.

Apart from ``distributed`` (which spawns processes that run the trainer) so the trainer can use
these without importing the module that imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch

from napari_fibsem.core.training.ddp import DistContext

T = TypeVar("T")


def shard(batches: Sequence[T], ctx: DistContext, pad: bool = True) -> list[T]:
    """This process's share of one epoch's (already shuffled) batches.

    With ``pad`` the list is first wrapped around to a multiple of ``world_size`` so every process
    takes the same number of steps (DDP needs that); without it (validation) each batch goes to
    exactly one process. Single process: the batches unchanged.
    """
    items = list(batches)
    if not ctx.enabled:
        return items
    if pad and items:
        items += [items[i % len(items)] for i in range((-len(items)) % ctx.world_size)]
    return items[ctx.rank :: ctx.world_size]


def data_parallel(model: torch.nn.Module, ctx: DistContext, device: torch.device) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel (gradients averaged over the processes) when
    there are several; the model itself otherwise. Train through the wrapper, evaluate the model."""
    if not ctx.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
