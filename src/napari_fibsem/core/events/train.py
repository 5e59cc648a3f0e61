"""Training the event heatmap U-Net on a training set, then choosing and testing its threshold.

``train_events(settings)`` reads the set's train/val/test event folders (split by source movie),
normalises each movie crop once (the percentile rule stored in the bundle), and trains on one
sample per crop frame: the ``n_frames`` window around it and its Gaussian ground-truth map, which
is a peak on annotated frames and zero elsewhere (so the other frames of event crops and all
frames of negative crops teach what is *not* an event). The weights with the lowest validation
loss are kept; then score maps of the val crops choose the threshold maximising F-beta (events
from :func:`~.peaks.find_events`, matched one to one with the annotated events), and the test
crops, never seen before, give the precision, recall and F1 reported in ``performance.yaml`` and
in ``best.pt``.

With whole-movie testing on (the default) the chosen threshold is also scored over every frame of
the test movies (``test_movies`` in ``performance.yaml``, see :mod:`.evaluate`): the stricter number.

The segmentation :class:`~napari_fibsem.core.training.loop.Trainer` is built around smp models,
class-index masks and image folders; rather than bend it, this is a compact loop that reuses its
parts: :class:`~napari_fibsem.core.training.progress.Progress` and stop checks, the console / CSV /
TensorBoard loggers, device resolution, the bundle writer, atomic writes and its data-parallel
helpers (:mod:`~napari_fibsem.core.training.ddp`): given a ``dist_context`` (torchrun, or
:func:`~.distributed.train_events_distributed`), each process trains on its share of every
epoch's batches with gradients averaged by DDP, losses and scores are summed over the processes,
and only rank 0 writes.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from napari_fibsem.core.events.augment import augment_sample
from napari_fibsem.core.events.evaluate import CROP_SCOPE, score_crops, score_movies
from napari_fibsem.core.events.losses import EventLoss
from napari_fibsem.core.events.model import (
    build_heatmap_unet,
    save_event_bundle,
    score_map,
    window,
)
from napari_fibsem.core.events.parallel import data_parallel, shard
from napari_fibsem.core.events.settings import EventSettings
from napari_fibsem.core.events.train_split import Crop, load_split
from napari_fibsem.core.events.training_sets import SET_FILE
from napari_fibsem.core.io.atomic import atomic_write_text
from napari_fibsem.core.training.checkpointing import BEST, METRICS_CSV
from napari_fibsem.core.training.data import TrainingSetupError
from napari_fibsem.core.training.ddp import (
    SINGLE,
    DistContext,
    all_sum,
    any_true,
    broadcast_buffers,
    gather_objects,
    init_group,
    weights_digest,
)
from napari_fibsem.core.training.loggers import (
    ConsoleLogger,
    CsvLogger,
    TensorBoardLogger,
    TrainingLogger,
    Write,
)
from napari_fibsem.core.training.prepare import run_device
from napari_fibsem.core.training.progress import Progress, ProgressCallback, StopCheck, TrainingError

PERFORMANCE = "performance.yaml"


@dataclass(frozen=True)
class EventTrainingResult:
    output: Path
    best_path: Path | None
    performance_path: Path | None
    threshold: float | None
    val: dict[str, Any] = field(default_factory=dict)
    """At the chosen threshold: fbeta, precision, recall, tp, fp, fn."""
    test: dict[str, Any] | None = None
    """At the chosen threshold: precision, recall, f1, tp, fp, fn, chance_f1 (None without a test split)."""
    epochs_completed: int = 0
    best_epoch: int | None = None
    history: tuple[dict[str, Any], ...] = ()
    cancelled: bool = False
    test_movies: dict[str, Any] | None = None
    """Whole test movies at the chosen threshold (see :mod:`.evaluate`; None when off)."""
    weights_sha1: str | None = None
    """Digest of the kept weights (equal on every process of a data-parallel run)."""


def _samples(crops: Sequence[Crop]) -> list[tuple[int, int]]:
    return [(i, t) for i, c in enumerate(crops) for t in range(c.images.shape[0])]


def _batches(
    samples: Sequence[tuple[int, int]],
    crops: Sequence[Crop],
    batch_size: int,
    copies: int,
    rng: np.random.Generator | None,
) -> list[list[tuple[int, int]]]:
    """(sample index, copy) batches of equal crop size; shuffled when ``rng`` is given."""
    items = [(s, k) for s in range(len(samples)) for k in range(copies)]
    if rng is not None:
        items = [items[i] for i in rng.permutation(len(items))]
    buckets: dict[tuple[int, int], list[tuple[int, int]]] = {}
    out = []
    for s, k in items:
        shape = crops[samples[s][0]].target.shape[-2:]
        bucket = buckets.setdefault(shape, [])
        bucket.append((s, k))
        if len(bucket) == batch_size:
            out.append(bucket)
            buckets[shape] = []
    return out + [b for b in buckets.values() if b]


def _tensors(
    batch, samples, crops, settings: EventSettings, epoch: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for s, k in batch:
        i, t = samples[s]
        x, y = window(crops[i].images, t, settings.n_frames), crops[i].target[t]
        if epoch is not None and settings.n_augmentations > 0:
            x, y = augment_sample(x, y, settings, np.random.default_rng([settings.seed, epoch, s, k]))
        xs.append(x)
        ys.append(y[None])
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


# -- the run --------------------------------------------------------------------------------------
def _loggers(settings: EventSettings, output: Path, write: Write | None) -> list[TrainingLogger]:
    loggers: list[TrainingLogger] = []
    for name in dict.fromkeys(settings.logger):
        if name == "console":
            loggers.append(ConsoleLogger(write, settings.epochs))
        elif name == "csv":
            loggers.append(CsvLogger(output / METRICS_CSV))
        elif name == "tensorboard":
            loggers.append(TensorBoardLogger(output / "tensorboard"))
    return loggers


def _panel(x: np.ndarray, target: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``H x 3W x 3`` uint8: centre input frame | target | prediction, for TensorBoard."""
    lo, hi = np.percentile(x, [1, 99.8])
    img = np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1)
    row = np.concatenate([img, np.clip(target, 0, 1), np.clip(pred, 0, 1)], axis=1)
    return np.repeat((row * 255).astype(np.uint8)[..., None], 3, axis=2)


def _check_output(settings: EventSettings) -> Path:
    if settings.output is None:
        raise TrainingSetupError(
            "output: no run folder given; set output: in the settings file or pass --out"
        )
    output = settings.output
    if output.exists() and not output.is_dir():
        raise TrainingSetupError(f"output {output} is a file, not a folder")
    existing = [n for n in (BEST, PERFORMANCE) if (output / n).exists()]
    if existing and not settings.overwrite:
        raise TrainingSetupError(
            f"output {output} already holds a run ({', '.join(existing)}); choose another output or set overwrite: true"
        )
    return output


def train_events(
    settings: EventSettings,
    *,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    write: Write | None = None,
    dist_context: DistContext | None = None,
    init_method: str = "env://",
) -> EventTrainingResult:
    """Train, choose the threshold on val, score test; write ``best.pt`` and ``performance.yaml``.

    ``should_stop`` is polled before every step: True ends the run without a bundle
    (``cancelled=True``). ``write`` receives the per-epoch console lines. With a ``dist_context``
    of several processes this is one process's part of a data-parallel run (it joins the group with
    ``init_method``; the caller leaves it): every process returns the same numbers, and only rank 0
    writes files, logs and reports progress (its result alone carries the paths).
    """
    started = time.perf_counter()
    ctx = dist_context or SINGLE
    device = run_device(settings, ctx)  # type: ignore[arg-type]  (reads only .device)
    init_group(ctx, device, init_method)
    failure: BaseException | None = None
    try:
        output = _check_output(settings) if ctx.is_main else settings.output
        train, val, test = (load_split(settings.training_set, p) for p in ("train", "val", "test"))
        where = settings.training_set / SET_FILE
        if not train or not val:
            raise TrainingSetupError(
                f"{where}: the train and val splits need events (train {len(train)}, val {len(val)})"
            )
        channels = {c.images.shape[1] for c in train + val + test}
        if len(channels) != 1:
            raise TrainingSetupError(f"{where}: the events have different channel counts {sorted(channels)}")
    except (ValueError, OSError) as e:
        failure = e
    if any_true(failure is not None, ctx, device):
        raise failure or TrainingSetupError("another training process failed during setup")
    assert output is not None
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    samples, val_samples = _samples(train), _samples(val)
    if settings.subset_fraction < 1:
        keep = max(1, round(settings.subset_fraction * len(samples)))
        samples = [samples[i] for i in sorted(rng.choice(len(samples), keep, replace=False))]

    model = build_heatmap_unet(settings, channels.pop()).to(device)
    net = data_parallel(model, ctx, device)
    copies = max(1, settings.n_augmentations)
    spe = len(shard(_batches(samples, train, settings.batch_size, copies, None), ctx))
    total = settings.epochs * spe
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.initial_learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, max(1, total), settings.initial_learning_rate / 10
    )
    criterion = EventLoss(settings.loss, settings.alpha, settings.gamma)
    loggers: list[TrainingLogger] = []
    if ctx.is_main:
        output.mkdir(parents=True, exist_ok=True)
        loggers = _loggers(settings, output, write)
    history: list[dict[str, Any]] = []
    step, best_loss, best_epoch, best_state, last_loss = 0, math.inf, None, None, None

    def emit(phase: str, epoch: int, metrics: dict | None = None, message: str = "") -> None:
        if on_progress is not None and ctx.is_main:
            on_progress(Progress(epoch, step, total, last_loss, dict(metrics or {}), phase, message))  # type: ignore[arg-type]

    describe = (f"{len(train)} train crops ({len(samples)} samples x {copies}), {len(val)} val, {len(test)} test; "
                f"device {device}" + (f" x{ctx.world_size} processes" if ctx.enabled else ""))  # fmt: skip
    emit("setup", 1, message=describe)
    cancelled = False
    try:
        for epoch in range(settings.epochs):
            t0 = time.perf_counter()
            model.train()
            loss_sum, loss_count = 0.0, 0
            order = np.random.default_rng([settings.seed, epoch])
            for batch in shard(_batches(samples, train, settings.batch_size, copies, order), ctx):
                if any_true(should_stop is not None and should_stop(), ctx, device):
                    cancelled = True
                    break
                x, y = (a.to(device) for a in _tensors(batch, samples, train, settings, epoch))
                loss = criterion(net(x), y)
                last_loss = float(loss.detach())
                if any_true(not math.isfinite(last_loss), ctx, device):  # every process stops together
                    raise TrainingError(
                        f"the loss became {last_loss if not math.isfinite(last_loss) else 'not finite on another process'} "
                        f"at step {step + 1}; try a lower initial_learning_rate than {settings.initial_learning_rate}"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
                loss_sum, loss_count = loss_sum + last_loss, loss_count + 1
                for lg in loggers:
                    lg.log_scalars(
                        {"train/loss": last_loss, "train/lr": optimizer.param_groups[0]["lr"]}, step
                    )
                emit("train", epoch + 1)
            if cancelled:
                break
            broadcast_buffers(model, ctx)  # rank 0's BatchNorm statistics everywhere: one model again
            sums = all_sum(torch.tensor([loss_sum, loss_count], dtype=torch.float64, device=device), ctx)
            val_loss = _val_loss(model, criterion, val_samples, val, settings, device, ctx)
            improved = val_loss < best_loss
            if improved:
                best_loss, best_epoch = val_loss, epoch + 1
                best_state = copy.deepcopy(model.state_dict())
            record = {"epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
                      "train_loss": float(sums[0] / max(float(sums[1]), 1.0)), "val_loss": val_loss,
                      "best": improved, "time_s": round(time.perf_counter() - t0, 3)}  # fmt: skip
            history.append(record)
            for lg in loggers:
                lg.log_epoch(record, history)
            _log_panel(loggers, model, val, settings, step)
            emit("validate", epoch + 1, {"val_loss": val_loss})
    finally:
        for lg in loggers:
            lg.close()
        if ctx.enabled:  # free DDP's hold on the process group now, not at interpreter exit
            del net
            gc.collect()
    if cancelled or best_state is None:
        emit("done", len(history), message="cancelled")
        return EventTrainingResult(output, None, None, None, epochs_completed=len(history), best_epoch=best_epoch,
                                   history=tuple(history), cancelled=True)  # fmt: skip

    model.load_state_dict(best_state)
    digest = weights_digest(best_state)
    replicas_agree = len(set(gather_objects(digest, ctx))) == 1
    emit("validate", len(history), message=f"choosing the threshold on {len(val)} val crops")
    threshold, sweep, val_scores, test_scores = score_crops(model, val, test, settings, device, ctx)
    if settings.test_movies or (settings.whole_movie_test and test):
        emit("validate", len(history), message="scoring the whole test movies")
    movie_scores = score_movies(model, threshold, settings, train, val, test, device, ctx)
    movie_totals = {k: v for k, v in (movie_scores or {}).items() if isinstance(v, int | float)}
    scores = {"threshold": threshold, "beta": settings.beta, "best_epoch": best_epoch, "val_loss": best_loss,
              **{f"val_{k}": v for k, v in val_scores.items()},
              **{f"test_{k}": v for k, v in (test_scores or {}).items()},
              **{f"test_movie_{k}": v for k, v in movie_totals.items()}}  # fmt: skip
    result = EventTrainingResult(output, None, None, threshold, val_scores, test_scores, len(history), best_epoch,
                                 tuple(history), test_movies=movie_scores, weights_sha1=digest)  # fmt: skip
    if not ctx.is_main:
        return result
    best_path = save_event_bundle(output / BEST, model.cpu(), settings, threshold, scores)
    performance = {
        "threshold": threshold,
        "beta": settings.beta,
        "val": val_scores,
        "test": None if test_scores is None else {"scope": CROP_SCOPE, **test_scores},
        "test_movies": movie_scores,
        "sweep": sweep,
        "training": {
            "epochs": len(history),
            "best_epoch": best_epoch,
            "best_val_loss": best_loss,
            "steps": step,
            "train_samples": len(samples),
            "val_samples": len(val_samples),
            "device": str(device),
            "processes": ctx.world_size,
            "weights_sha1": digest,
            "replicas_agree": replicas_agree,
            "seconds": round(time.perf_counter() - started, 1),
        },  # fmt: skip
        "bundle": str(best_path),
        "settings": settings.to_jsonable(),
    }
    perf_path = output / PERFORMANCE
    atomic_write_text(perf_path, yaml.safe_dump(performance, sort_keys=False))
    if not replicas_agree and write is not None:
        write(f"warning: the {ctx.world_size} processes ended with different weights; best.pt holds rank 0's")
    emit("done", len(history), {"threshold": threshold, **scores})
    return dataclasses.replace(result, best_path=best_path, performance_path=perf_path)


@torch.no_grad()
def _val_loss(
    model, criterion, samples, crops, settings: EventSettings, device, ctx: DistContext = SINGLE
) -> float:
    """Mean loss over the val samples; each process takes every ``world_size``-th batch."""
    model.eval()
    total, n = 0.0, 0
    for batch in shard(_batches(samples, crops, settings.batch_size, 1, None), ctx, pad=False):
        x, y = (a.to(device) for a in _tensors(batch, samples, crops, settings, None))
        total += float(criterion(model(x), y)) * len(batch)
        n += len(batch)
    model.train()
    sums = all_sum(torch.tensor([total, n], dtype=torch.float64, device=device), ctx)
    return float(sums[0] / max(float(sums[1]), 1.0))


def _log_panel(
    loggers: Sequence[TrainingLogger], model, crops: Sequence[Crop], settings: EventSettings, step: int
) -> None:
    """The first val crop's most event-like frame, its target and the prediction."""
    if not any(lg.wants_images for lg in loggers):
        return
    crop = crops[0]
    t = int(crop.target.reshape(len(crop.target), -1).max(axis=1).argmax())
    pred = score_map(model, crop.images, settings.n_frames)[t]
    panel = _panel(crop.images[t, 0], crop.target[t], pred)
    for lg in loggers:
        if lg.wants_images:
            lg.log_images("val/example", panel, step)
