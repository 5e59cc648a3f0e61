"""Data-parallel event training: spawning the local processes that each run the event trainer.

The process group, reductions and spawning are the segmentation trainer's
(:mod:`napari_fibsem.core.training.ddp`); this module and :mod:`.parallel` (the per-process part the
trainer itself uses: epoch shards, the DDP wrapper) add what the event loop needs. Each epoch's
batches are built and shuffled from ``(seed, epoch)`` alone, identically in every process, and
:func:`~.parallel.shard` deals them out like torch's ``DistributedSampler``, so ``batch_size`` is per process
and an epoch takes ``1 / world_size`` of the steps. Two ways in:

- ``torchrun --nproc-per-node N -m napari_fibsem.cli events train settings.yaml``: the group comes
  from torchrun's environment;
- ``napari-fibsem events train settings.yaml --nprocs N`` / :func:`train_events_distributed`,
  which spawns N local processes (gloo on CPU, NCCL on GPUs, one GPU each).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_fibsem.core.events.parallel import data_parallel, shard
from napari_fibsem.core.training.ddp import DistContext, run_distributed

if TYPE_CHECKING:
    from napari_fibsem.core.events.settings import EventSettings
    from napari_fibsem.core.events.train import EventTrainingResult

__all__ = [
    "data_parallel",
    "shard",
    "train_events_distributed",
    "train_events_rank",
]  # the first two: ``parallel``


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
