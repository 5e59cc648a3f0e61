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

The segmentation :class:`~napari_fibsem.core.training.loop.Trainer` is built around smp models,
class-index masks and image folders; rather than bend it, this is a compact loop that reuses its
parts: :class:`~napari_fibsem.core.training.progress.Progress` and stop checks, the console / CSV /
TensorBoard loggers, device resolution, the bundle writer and atomic writes. Single process
(no DDP): event models are small and a run takes minutes on one GPU.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
import yaml

from napari_fibsem.core._atomic import atomic_write_text
from napari_fibsem.core.events.augment import augment_sample
from napari_fibsem.core.events.crops import group_points
from napari_fibsem.core.events.losses import EventLoss
from napari_fibsem.core.events.model import (
    MIN_DISTANCE,
    as_tchw,
    build_heatmap_unet,
    normalise,
    save_event_bundle,
    score_map,
    window,
)
from napari_fibsem.core.events.peaks import Event, fbeta, find_events, match_events
from napari_fibsem.core.events.points import EventPoint
from napari_fibsem.core.events.settings import EventSettings
from napari_fibsem.core.events.training_sets import SET_FILE, read_set
from napari_fibsem.core.training.checkpointing import BEST, METRICS_CSV
from napari_fibsem.core.training.data import TrainingSetupError
from napari_fibsem.core.training.ddp import SINGLE
from napari_fibsem.core.training.loggers import (
    ConsoleLogger,
    CsvLogger,
    TensorBoardLogger,
    TrainingLogger,
    Write,
)
from napari_fibsem.core.training.prepare import resolve_device
from napari_fibsem.core.training.progress import Progress, ProgressCallback, StopCheck, TrainingError

PERFORMANCE = "performance.yaml"
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""Thresholds tried on the val split (0.05 .. 0.95)."""
CHANCE_DRAWS = 20


@dataclass
class Crop:
    """One event folder, loaded: normalised frames, target maps and the annotated events."""

    id: str
    label: str
    images: np.ndarray  # (T, C, H, W) float32, normalised
    target: np.ndarray  # (T, H, W) float32 in [0, 1]
    truth: list[tuple[int, float, float]]  # one (frame, y, x) per event: its first annotated frame


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


# -- data -----------------------------------------------------------------------------------------
def load_split(set_folder: str | Path, part: str) -> list[Crop]:
    """The crops of one split (``train``, ``val`` or ``test``) of a training set."""
    record = read_set(set_folder)
    out = []
    for event_id in record.get("events", {}).get(part, []):
        folder = Path(record["folders"][event_id])
        try:
            meta = yaml.safe_load((folder / "event.yaml").read_text())
            images = as_tchw(tifffile.imread(folder / "images.tif"))
            gt = as_tchw(tifffile.imread(folder / "ground_truth.tif").astype(np.float32))
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise TrainingSetupError(
                f"{folder}: cannot read event {event_id} of {Path(set_folder) / SET_FILE} ({e})"
            ) from None
        if images.shape != gt.shape:
            raise TrainingSetupError(
                f"{folder}: images {images.shape} and ground truth {gt.shape} differ in shape"
            )
        points = [EventPoint(int(f), float(y), float(x)) for f, y, x in meta.get("points") or []]
        truth = [(min(p.frame for p in g), float(np.mean([p.y for p in g])), float(np.mean([p.x for p in g])))
                 for g in group_points(points)]  # fmt: skip
        out.append(Crop(event_id, str(meta.get("label", "event")), normalise(images), gt.max(axis=1), truth))
    return out


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


# -- evaluation -----------------------------------------------------------------------------------
def evaluate_maps(
    maps: Sequence[np.ndarray],
    truths: Sequence[list[tuple[int, float, float]]],
    threshold: float,
    settings: EventSettings,
) -> tuple[int, int, int, list[list[Event]]]:
    """Summed (tp, fp, fn) over crops at ``threshold``, and each crop's detected events."""
    tp = fp = fn = 0
    found = []
    for m, truth in zip(maps, truths):
        events = find_events(m, threshold, settings.hysteresis, MIN_DISTANCE)
        a, b, c, _ = match_events(events, truth, settings.match_distance, settings.match_frames)
        tp, fp, fn = tp + a, fp + b, fn + c
        found.append(events)
    return tp, fp, fn, found


def choose_threshold(
    maps: Sequence[np.ndarray], truths: Sequence[list[tuple[int, float, float]]], settings: EventSettings
) -> tuple[float, list[dict[str, float]]]:
    """The threshold of :data:`THRESHOLDS` with the best F-beta (ties: the higher one) and the sweep."""
    sweep = []
    for thr in THRESHOLDS:
        tp, fp, fn, _ = evaluate_maps(maps, truths, thr, settings)
        p, r, f = fbeta(tp, fp, fn, settings.beta)
        sweep.append(
            {"threshold": thr, "precision": p, "recall": r, "fbeta": f, "tp": tp, "fp": fp, "fn": fn}
        )
    best = max(sweep, key=lambda row: (row["fbeta"], row["threshold"]))
    return float(best["threshold"]), sweep


def chance_f1(
    shapes: Sequence[tuple[int, ...]], truths: Sequence[list[tuple[int, float, float]]], counts: Sequence[int],
    settings: EventSettings, draws: int = CHANCE_DRAWS, seed: int = 0,
) -> float:  # fmt: skip
    """Mean F1 of a predictor placing the same number of events per crop at random frames and pixels."""
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(draws):
        tp = fp = fn = 0
        for (t, h, w), truth, n in zip(shapes, truths, counts):
            guess = [Event(int(rng.integers(t)), float(rng.uniform(0, h)), float(rng.uniform(0, w)), float(rng.random()), 1)
                     for _ in range(n)]  # fmt: skip
            a, b, c, _ = match_events(guess, truth, settings.match_distance, settings.match_frames)
            tp, fp, fn = tp + a, fp + b, fn + c
        scores.append(fbeta(tp, fp, fn, 1.0)[2])
    return float(np.mean(scores)) if scores else 0.0


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
) -> EventTrainingResult:
    """Train, choose the threshold on val, score test; write ``best.pt`` and ``performance.yaml``.

    ``should_stop`` is polled before every step: True ends the run without a bundle
    (``cancelled=True``). ``write`` receives the per-epoch console lines.
    """
    started = time.perf_counter()
    output = _check_output(settings)
    device = resolve_device(settings, SINGLE)  # type: ignore[arg-type]  (reads only .device)
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    train, val, test = (load_split(settings.training_set, p) for p in ("train", "val", "test"))
    where = settings.training_set / SET_FILE
    if not train or not val:
        raise TrainingSetupError(
            f"{where}: the train and val splits need events (train {len(train)}, val {len(val)})"
        )
    channels = {c.images.shape[1] for c in train + val + test}
    if len(channels) != 1:
        raise TrainingSetupError(f"{where}: the events have different channel counts {sorted(channels)}")
    samples, val_samples = _samples(train), _samples(val)
    if settings.subset_fraction < 1:
        keep = max(1, round(settings.subset_fraction * len(samples)))
        samples = [samples[i] for i in sorted(rng.choice(len(samples), keep, replace=False))]

    model = build_heatmap_unet(settings, channels.pop()).to(device)
    copies = max(1, settings.n_augmentations)
    spe = len(_batches(samples, train, settings.batch_size, copies, None))
    total = settings.epochs * spe
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.initial_learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, max(1, total), settings.initial_learning_rate / 10
    )
    criterion = EventLoss(settings.loss, settings.alpha, settings.gamma)
    output.mkdir(parents=True, exist_ok=True)
    loggers = _loggers(settings, output, write)
    history: list[dict[str, Any]] = []
    step, best_loss, best_epoch, best_state, last_loss = 0, math.inf, None, None, None

    def emit(phase: str, epoch: int, metrics: dict | None = None, message: str = "") -> None:
        if on_progress is not None:
            on_progress(Progress(epoch, step, total, last_loss, dict(metrics or {}), phase, message))  # type: ignore[arg-type]

    describe = (f"{len(train)} train crops ({len(samples)} samples x {copies}), {len(val)} val, {len(test)} test; "
                f"device {device}")  # fmt: skip
    emit("setup", 1, message=describe)
    cancelled = False
    try:
        for epoch in range(settings.epochs):
            t0 = time.perf_counter()
            model.train()
            losses = []
            for batch in _batches(
                samples, train, settings.batch_size, copies, np.random.default_rng([settings.seed, epoch])
            ):
                if should_stop is not None and should_stop():
                    cancelled = True
                    break
                x, y = (a.to(device) for a in _tensors(batch, samples, train, settings, epoch))
                loss = criterion(model(x), y)
                last_loss = float(loss.detach())
                if not math.isfinite(last_loss):
                    raise TrainingError(
                        f"the loss became {last_loss} at step {step + 1}; try a lower initial_learning_rate "
                        f"than {settings.initial_learning_rate}"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
                losses.append(last_loss)
                for lg in loggers:
                    lg.log_scalars(
                        {"train/loss": last_loss, "train/lr": optimizer.param_groups[0]["lr"]}, step
                    )
                emit("train", epoch + 1)
            if cancelled:
                break
            val_loss = _val_loss(model, criterion, val_samples, val, settings, device)
            improved = val_loss < best_loss
            if improved:
                best_loss, best_epoch = val_loss, epoch + 1
                best_state = copy.deepcopy(model.state_dict())
            record = {"epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
                      "train_loss": float(np.mean(losses)), "val_loss": val_loss, "best": improved,
                      "time_s": round(time.perf_counter() - t0, 3)}  # fmt: skip
            history.append(record)
            for lg in loggers:
                lg.log_epoch(record, history)
            _log_panel(loggers, model, val, settings, step)
            emit("validate", epoch + 1, {"val_loss": val_loss})
    finally:
        for lg in loggers:
            lg.close()
    if cancelled or best_state is None:
        emit("done", len(history), message="cancelled")
        return EventTrainingResult(output, None, None, None, epochs_completed=len(history), best_epoch=best_epoch,
                                   history=tuple(history), cancelled=True)  # fmt: skip

    model.load_state_dict(best_state)
    emit("validate", len(history), message=f"choosing the threshold on {len(val)} val crops")
    val_maps = [score_map(model, c.images, settings.n_frames, device) for c in val]
    threshold, sweep = choose_threshold(val_maps, [c.truth for c in val], settings)
    row = next(r for r in sweep if r["threshold"] == threshold)
    val_scores = {"fbeta": row["fbeta"], "precision": row["precision"], "recall": row["recall"],
                  "tp": row["tp"], "fp": row["fp"], "fn": row["fn"], "events": sum(len(c.truth) for c in val),
                  "crops": len(val)}  # fmt: skip
    test_scores = None
    if test:
        test_maps = [score_map(model, c.images, settings.n_frames, device) for c in test]
        truths = [c.truth for c in test]
        tp, fp, fn, found = evaluate_maps(test_maps, truths, threshold, settings)
        p, r, f1 = fbeta(tp, fp, fn, 1.0)
        chance = chance_f1(
            [m.shape for m in test_maps], truths, [len(e) for e in found], settings, seed=settings.seed
        )
        test_scores = {"precision": p, "recall": r, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
                       "events": sum(len(t) for t in truths), "crops": len(test), "chance_f1": chance}  # fmt: skip
    scores = {"threshold": threshold, "beta": settings.beta, "best_epoch": best_epoch, "val_loss": best_loss,
              **{f"val_{k}": v for k, v in val_scores.items()},
              **{f"test_{k}": v for k, v in (test_scores or {}).items()}}  # fmt: skip
    best_path = save_event_bundle(output / BEST, model.cpu(), settings, threshold, scores)
    performance = {
        "threshold": threshold,
        "beta": settings.beta,
        "val": val_scores,
        "test": test_scores,
        "sweep": sweep,
        "training": {
            "epochs": len(history),
            "best_epoch": best_epoch,
            "best_val_loss": best_loss,
            "steps": step,
            "train_samples": len(samples),
            "val_samples": len(val_samples),
            "device": str(device),
            "seconds": round(time.perf_counter() - started, 1),
        },  # fmt: skip
        "bundle": str(best_path),
        "settings": settings.to_jsonable(),
    }
    perf_path = output / PERFORMANCE
    atomic_write_text(perf_path, yaml.safe_dump(performance, sort_keys=False))
    emit("done", len(history), {"threshold": threshold, **scores})
    return EventTrainingResult(output, best_path, perf_path, threshold, val_scores, test_scores, len(history),
                               best_epoch, tuple(history))  # fmt: skip


@torch.no_grad()
def _val_loss(model, criterion, samples, crops, settings: EventSettings, device) -> float:
    model.eval()
    total, n = 0.0, 0
    for batch in _batches(samples, crops, settings.batch_size, 1, None):
        x, y = (a.to(device) for a in _tensors(batch, samples, crops, settings, None))
        total += float(criterion(model(x), y)) * len(batch)
        n += len(batch)
    model.train()
    return total / max(n, 1)


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
