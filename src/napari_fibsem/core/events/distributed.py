"""Data-parallel event training: epoch shards, the DDP wrapper, and spawning local processes.

The process group, reductions and spawning are the segmentation trainer's
(:mod:`napari_fibsem.core.training.ddp`); this module adds what the event loop needs. Each epoch's
batches are built and shuffled from ``(seed, epoch)`` alone, identically in every process, and
:func:`shard` deals them out like torch's ``DistributedSampler``, so ``batch_size`` is per process
and an epoch takes ``1 / world_size`` of the steps. Two ways in:

- ``torchrun --nproc-per-node N -m napari_fibsem.cli events train settings.yaml``: the group comes
  from torchrun's environment;
- ``napari-fibsem events train settings.yaml --nprocs N`` / :func:`train_events_distributed`,
  which spawns N local processes (gloo on CPU, NCCL on GPUs, one GPU each).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from napari_fibsem.core.training.ddp import DistContext, run_distributed

if TYPE_CHECKING:
    from napari_fibsem.core.events.settings import EventSettings
    from napari_fibsem.core.events.train import EventTrainingResult

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


def train_events_rank(
    settings_data: dict[str, Any], ctx: DistContext, init_method: str, **kwargs: Any
) -> EventTrainingResult:
    """One spawned process's part of :func:`train_events_distributed` (a ``run_distributed`` target)."""
    from napari_fibsem.core.events.settings import EventSettings
    from napari_fibsem.core.events.train import train_events

    settings = EventSettings.model_validate(settings_data)
    return train_events(settings, dist_context=ctx, init_method=init_method, **kwargs)


def train_events_distributed(settings: EventSettings, nprocs: int, **kwargs: Any) -> EventTrainingResult:
    """Train with ``nprocs`` local processes and return rank 0's result (the one with the paths).

    ``kwargs`` (e.g. ``write``) reach rank 0 only and must be picklable; progress callbacks cannot
    cross processes, so they are refused. ``nprocs == 1`` trains in this process.
    """
    from napari_fibsem.core.events.train import train_events

    if "on_progress" in kwargs or "should_stop" in kwargs:
        raise TypeError("on_progress/should_stop cannot be passed to spawned processes")
    if nprocs == 1:
        return train_events(settings, **kwargs)
    return run_distributed(train_events_rank, settings.to_jsonable(), nprocs, **kwargs)[0]
