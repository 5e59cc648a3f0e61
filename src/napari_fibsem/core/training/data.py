"""From a training config to batches: class map, checked datasets, seeded per-epoch loaders.

Each epoch's order comes from ``(seed, epoch)`` only (torch's ``DistributedSampler`` with one or
many replicas) and each sample's augmentation from ``(seed, epoch, index)`` (the dataset hook), so
a run resumed mid-epoch skips exactly the batches it already did and sees the same data after.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_fibsem.core.data.dataset import (
    DatasetError,
    DatasetIndex,
    Sample,
    SegmentationDataset,
    discover,
    split,
    validate,
)
from napari_fibsem.core.errors import FibsemError
from napari_fibsem.core.io.classes import AUTOLAMELLA_CLASSES, ClassMap
from napari_fibsem.core.training.augment import EMAugment
from napari_fibsem.core.training.config import TrainingConfig
from napari_fibsem.core.training.losses import IGNORE


class TrainingSetupError(FibsemError, ValueError):
    """Config, data and checkpoint do not fit together; the message names the file or key."""


@dataclass(frozen=True)
class TrainingData:
    """The two splits, the class map they are checked against and where that map came from."""

    train: SegmentationDataset
    val: SegmentationDataset | None
    class_map: ClassMap
    class_map_source: str

    def describe(self) -> str:
        val = f"{len(self.val)} validation" if self.val is not None else "no validation"
        return (
            f"{len(self.train)} training / {val} images; classes {self.class_map.names} "
            f"(from {self.class_map_source})"
        )


# -- class map -----------------------------------------------------------------------------------
def default_class_map(num_classes: int | None) -> ClassMap:
    """AutoLamella's classes, cut to ``num_classes`` (OpenFIBSEM's 5-class models drop volume_block)."""
    if num_classes is None or num_classes == len(AUTOLAMELLA_CLASSES):
        return ClassMap.default()
    if num_classes < len(AUTOLAMELLA_CLASSES):
        return ClassMap({i: AUTOLAMELLA_CLASSES[i] for i in range(num_classes)})
    extra = ClassMap.from_names(["background", *(f"class_{i}" for i in range(1, num_classes))])
    return ClassMap({i: AUTOLAMELLA_CLASSES.get(i, extra[i]) for i in range(num_classes)})


def resolve_class_map(config: TrainingConfig) -> tuple[ClassMap, str]:
    """The config's ``class_map`` file, else the data folders' ``classes.yaml`` (which must agree),
    else AutoLamella's; checked against ``num_classes``."""
    if config.class_map is not None:
        class_map, source = ClassMap.load(config.class_map), str(config.class_map)
    else:
        found = [(p / "classes.yaml") for p in config.data_paths if (p / "classes.yaml").is_file()]
        maps = [(f, ClassMap.load(f)) for f in found]
        if maps:
            source, class_map = str(maps[0][0]), maps[0][1]
            differ = [str(f) for f, m in maps[1:] if m != class_map]
            if differ:
                raise TrainingSetupError(
                    f"the data folders' class maps disagree: {source} vs {', '.join(differ)}; "
                    "make them identical or give one with the 'class_map' key"
                )
        else:
            class_map = default_class_map(config.num_classes)
            source = "the AutoLamella default" + (
                f" cut to {config.num_classes} classes" if config.num_classes else ""
            )
    if config.num_classes is not None and config.num_classes != class_map.num_classes:
        raise TrainingSetupError(
            f"num_classes is {config.num_classes} but the class map {source} has ids {class_map.ids} "
            f"({class_map.num_classes} output channels); fix num_classes or the class map"
        )
    fg_weights = config.augment.foreground_weights
    if fg_weights is not None and len(fg_weights) != class_map.num_classes:
        raise TrainingSetupError(
            f"augment.foreground_weights has {len(fg_weights)} entries but the class map {source} needs "
            f"{class_map.num_classes} (one per output channel)"
        )
    if config.class_weights is not None and len(config.class_weights) != class_map.num_classes:
        raise TrainingSetupError(
            f"class_weights has {len(config.class_weights)} entries but the class map {source} needs "
            f"{class_map.num_classes} (one per output channel)"
        )
    return class_map, source


# -- datasets --------------------------------------------------------------------------------------
def _labelled(folders: Sequence[Path], label_folders: Sequence[Path] | None, what: str) -> list[Sample]:
    index = discover(folders, label_folders)
    labelled = index.labelled
    if not labelled:
        where = ", ".join(str(p) for p in (label_folders or [f / "labels" for f in folders]))
        raise DatasetError(
            f"no labelled {what} images: none of the {len(index.samples)} TIFFs in "
            f"{', '.join(map(str, folders))} has a label file in {where}"
        )
    return labelled


def build_datasets(
    config: TrainingConfig,
    class_map: ClassMap,
    normalize: Callable[[np.ndarray], np.ndarray],
    class_map_source: str = "",
    input_scale: float | None = None,
) -> TrainingData:
    """Find, validate and split the labelled images; augmentation goes on the training split only.

    Both splits are resized by ``input_scale`` (default: the config's; the trainer passes the
    model's, which a fine-tuned checkpoint may bring) before cropping and augmentation.
    """
    scale = config.input_scale if input_scale is None else input_scale
    samples = _labelled(config.data_paths, config.label_paths, "training")
    if config.validate_dataset:
        validate(DatasetIndex(tuple(samples)), class_map)
    if config.val_paths:
        train_s = samples
        val_s: list[Sample] = _labelled(config.val_paths, config.val_label_paths, "validation")
        if config.validate_dataset:
            validate(DatasetIndex(tuple(val_s)), class_map)
    elif config.split > 0:
        n = len(samples)
        n_val = max(1, round(config.split * n))
        if n_val >= n:
            raise DatasetError(
                f"only {n} labelled image(s) in {', '.join(map(str, config.data_paths))}: too few to hold out "
                f"a validation split of {config.split}; add images, set split: 0 or give val_paths"
            )
        train_s, val_s = split(samples, (1 - n_val / n, n_val / n), seed=config.seed)
    else:
        train_s, val_s = samples, []
    transform = EMAugment(config.augment, config.crop_size)
    if not config.augment.enabled and config.crop_size is None:
        transform = None
    train = SegmentationDataset(
        train_s, class_map, transform=transform, normalize=normalize, seed=config.seed, input_scale=scale
    )
    val = (
        SegmentationDataset(val_s, class_map, normalize=normalize, seed=config.seed, input_scale=scale)
        if val_s
        else None
    )
    return TrainingData(train, val, class_map, class_map_source)


# -- batching ------------------------------------------------------------------------------------
def pad_collate(
    stride: int,
) -> Callable[[list[tuple[torch.Tensor, torch.Tensor]]], tuple[torch.Tensor, torch.Tensor]]:
    """Batch images of different sizes: pad each to the batch's largest size rounded up to ``stride``.

    Images are reflect-padded like inference pads them; the padded label pixels are
    :data:`~napari_fibsem.core.training.losses.IGNORE`, so they count in no loss or metric.
    """

    def collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        hmax = max(x.shape[-2] for x, _ in items)
        wmax = max(x.shape[-1] for x, _ in items)
        th, tw = -(-hmax // stride) * stride, -(-wmax // stride) * stride
        xs, ys = [], []
        for x, y in items:
            ph, pw = th - x.shape[-2], tw - x.shape[-1]
            if ph or pw:
                mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
                x = F.pad(x[None], (0, pw, 0, ph), mode=mode)[0]
                y = F.pad(y, (0, pw, 0, ph), value=IGNORE)
            xs.append(x)
            ys.append(y)
        return torch.stack(xs), torch.stack(ys)

    return collate


def epoch_batches(
    dataset: SegmentationDataset,
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
) -> list[list[int]]:
    """This process's shuffled batches of ``epoch`` (every process gets the same number of batches)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    order = list(sampler)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def val_batches(
    dataset: SegmentationDataset, batch_size: int, rank: int = 0, world_size: int = 1
) -> list[list[int]]:
    """Validation shard of this process, unpadded (every image counted exactly once over all ranks)."""
    mine = list(range(rank, len(dataset), world_size))
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]


def seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in a DataLoader worker from torch's per-worker seed."""
    import random

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(
    dataset: SegmentationDataset,
    batches: list[list[int]],
    stride: int,
    num_workers: int,
    seed: int,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """A loader over explicit ``batches``; worker seeds come from ``seed``, not the global RNG."""
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers if batches else 0,
        collate_fn=pad_collate(stride),
        generator=generator,
        worker_init_fn=seed_worker,
        pin_memory=pin_memory,
    )


def loader_seed(seed: int, epoch: int, rank: int) -> int:
    """A well-mixed 63-bit seed for one (run seed, epoch, rank)."""
    return int(
        np.random.SeedSequence([seed, epoch, rank]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1)
    )
