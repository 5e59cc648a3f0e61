"""The trainer: seeded, cancellable, resumable, single- or multi-process.

``Trainer(config, on_progress=..., should_stop=...).run()`` trains and returns a
:class:`TrainingResult`; a widget runs it off the UI thread and calls :meth:`Trainer.cancel` (or
makes ``should_stop`` return True), which is checked before every step. Cancelling writes
``last.pt`` and its training state at the current step, so ``checkpoint: .../last.pt`` continues
the run as if it had never stopped (same weights, bit for bit, on CPU).
"""

from __future__ import annotations

import gc
import logging
import math
import os
import random
import time
from typing import Any

import numpy as np
import torch
import yaml

from napari_fibsem.core.io.atomic import atomic_write_text
from napari_fibsem.core.training import checkpointing as ck
from napari_fibsem.core.training.config import TrainingConfig
from napari_fibsem.core.training.data import (
    TrainingSetupError,
    build_datasets,
    epoch_batches,
    loader_seed,
    make_loader,
    resolve_class_map,
    val_batches,
)
from napari_fibsem.core.training.ddp import (
    SINGLE,
    DistContext,
    all_sum,
    any_true,
    has_unused_parameters,
    init_group,
)
from napari_fibsem.core.training.loggers import TrainingLogger, Write, build_loggers, overlay_panel
from napari_fibsem.core.training.losses import SegmentationLoss
from napari_fibsem.core.training.metrics import compute_metrics, confusion_matrix
from napari_fibsem.core.training.optim import build_optimizer, build_scheduler
from napari_fibsem.core.training.prepare import autocast_dtype, prepare_model, run_device
from napari_fibsem.core.training.progress import (
    Progress,
    ProgressCallback,
    StopCheck,
    StopFlag,
    TrainingError,
    TrainingResult,
)

_log = logging.getLogger("napari_fibsem.training")
_MINIMISE = {"val_loss", "train_loss"}


class Trainer:
    """One training run described by a :class:`TrainingConfig`.

    ``on_progress`` gets a :class:`Progress` after setup, after every step and validation, and at
    the end (in the training thread, and on rank 0 only). ``should_stop`` is polled before every step;
    True stops the run like :meth:`cancel`. ``write`` receives status lines (default: the
    ``napari_fibsem.training`` logger). ``loggers`` replaces the ones the config names (the caller then
    closes them). ``dist_context`` and ``init_method`` are set by :mod:`.ddp` for multi-process runs.
    """

    def __init__(
        self,
        config: TrainingConfig,
        *,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
        write: Write | None = None,
        loggers: list[TrainingLogger] | None = None,
        dist_context: DistContext | None = None,
        init_method: str = "env://",
    ) -> None:
        self.config = config
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.write = write or _log.info
        self.loggers: list[TrainingLogger] = list(loggers) if loggers is not None else []
        self._own_loggers = loggers is None
        self.ctx = dist_context or SINGLE
        self.init_method = init_method
        self._stop = StopFlag()
        # run state (what the training-state file holds)
        self.epoch = 0  # completed epochs
        self.batch = 0  # batches done in the current epoch
        self.global_step = 0
        self.loss_sum = 0.0
        self.loss_count = 0
        self.history: list[dict[str, Any]] = []
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.last_metrics: dict[str, Any] = {}
        self.last_loss: float | None = None

    def cancel(self) -> None:
        """Ask the run to stop before its next step (thread-safe); ``last.pt`` is written first."""
        self._stop.set()

    # -- run ------------------------------------------------------------------------------------
    def run(self) -> TrainingResult:
        device = run_device(self.config, self.ctx)
        init_group(self.ctx, device, self.init_method)
        try:
            failure: BaseException | None = None
            try:
                self._setup(device)
            except (ValueError, ImportError, OSError) as e:
                failure = e
            if any_true(failure is not None, self.ctx, device):
                raise failure or TrainingSetupError("another training process failed during setup")
            return self._train()
        finally:
            for lg in self.loggers if self._own_loggers else []:
                lg.close()
            if self.ctx.enabled:  # free DDP's hold on the process group now, not at interpreter exit,
                self.net = None  # where gloo's threads die with "terminate called" (SIGABRT)
                gc.collect()

    def _setup(self, device: torch.device) -> None:
        cfg, ctx = self.config, self.ctx
        self.device = device
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        random.seed(cfg.seed)
        if cfg.deterministic:  # some CUDA kernels (upsampling backward) have no deterministic version: warn
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
            torch.use_deterministic_algorithms(True, warn_only=True)
        class_map, source = resolve_class_map(cfg)
        prepared = prepare_model(cfg, class_map, source, device, ctx)
        self.model = prepared.model
        self.data = build_datasets(
            cfg, class_map, self.model.normalization.apply, source, input_scale=self.model.input_scale
        )
        ck.check_save_path(
            cfg.save_path, cfg.overwrite, cfg.checkpoint if prepared.mode == "resume" else None
        )
        self.spe = len(epoch_batches(self.data.train, cfg.batch_size, cfg.seed, 0, ctx.rank, ctx.world_size))
        self.total_steps = cfg.epochs * self.spe
        net = self.model.torch_module
        self.channels_last = any(
            p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
            for p in net.parameters()
        )
        if ctx.enabled:
            ids = [device.index] if device.type == "cuda" else None
            unused = has_unused_parameters(
                net, self.model.metadata.in_channels, max(64, 2 * self.model.stride), device
            )
            self.net = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=ids, find_unused_parameters=unused
            )
        else:
            self.net = net
        self.amp_dtype = autocast_dtype(device) if cfg.amp else None
        self.amp = self.amp_dtype is torch.float16  # float16 needs the grad scaler; bfloat16 does not
        self.optimizer = build_optimizer(cfg, net.parameters())
        self.scheduler = build_scheduler(cfg, self.optimizer, self.spe)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.criterion = SegmentationLoss(cfg.loss, cfg.class_weights).to(device)
        has_val = self.data.val is not None
        self.monitor = cfg.monitor if has_val or cfg.monitor == "train_loss" else "train_loss"
        if prepared.state is not None:
            ck.apply_state(self, prepared.state)
        if ctx.is_main:
            cfg.save_path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                cfg.save_path / ck.CONFIG_YAML, yaml.safe_dump(cfg.to_jsonable(), sort_keys=False)
            )
            if self._own_loggers:
                self.loggers = build_loggers(cfg, self.write)
            self.write(prepared.describe(cfg))
            self.write(
                f"{self.data.describe()}; device {device}"
                + (f" x{ctx.world_size} processes" if ctx.enabled else "")
            )
            if self.monitor != cfg.monitor:
                self.write(f"no validation images: best.pt follows train_loss instead of {cfg.monitor}")

    def _train(self) -> TrainingResult:
        cfg, ctx = self.config, self.ctx
        self._emit("setup", message=self.data.describe())
        cancelled = False
        while self.epoch < cfg.epochs and not cancelled:
            started = time.perf_counter()
            self.data.train.set_epoch(self.epoch)
            batches = epoch_batches(
                self.data.train, cfg.batch_size, cfg.seed, self.epoch, ctx.rank, ctx.world_size
            )
            loader = make_loader(
                self.data.train,
                batches[self.batch :],
                self.model.stride,
                cfg.num_workers,
                loader_seed(cfg.seed, self.epoch, ctx.rank),
                pin_memory=self.device.type == "cuda",
            )
            for x, y in loader:
                if any_true(self._stop() or bool(self.should_stop and self.should_stop()), ctx, self.device):
                    cancelled = True
                    break
                self._train_step(x, y)
            else:
                self._end_epoch(time.perf_counter() - started)
        if cancelled:
            if ctx.is_main:
                self._save_last()
                self.write(
                    f"cancelled at epoch {self.epoch + 1}, step {self.global_step}; resume with checkpoint: {cfg.save_path / ck.LAST}"
                )
        self._emit("done", metrics=self.last_metrics)
        return self._result(cancelled)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.net.train()
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.net(x)
        logits = logits.float()
        loss = self.criterion(logits, y)
        value = float(loss.detach())
        if any_true(not math.isfinite(value), self.ctx, self.device):  # every process stops together
            seen = value if not math.isfinite(value) else "not finite on another process"
            raise TrainingError(
                f"the loss became {seen} at step {self.global_step + 1} (epoch {self.epoch + 1}); "
                f"try a lower lr than {self.config.lr} or check the labels"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        self.batch += 1
        self.global_step += 1
        self.loss_sum += value
        self.loss_count += 1
        self.last_loss = value
        if self.ctx.is_main:
            if self.global_step % self.config.train_log_freq == 0:
                values = {"train/loss": value, "train/lr": self.optimizer.param_groups[0]["lr"]}
                for lg in self.loggers:
                    lg.log_scalars(values, self.global_step)
                self._log_panel("train/example", x, y, logits)
            self._emit("train")

    def _end_epoch(self, seconds: float) -> None:
        cfg, ctx = self.config, self.ctx
        sums = all_sum(
            torch.tensor([self.loss_sum, float(self.loss_count)], dtype=torch.float64, device=self.device),
            ctx,
        )
        self.epoch += 1
        self.batch = 0
        self.loss_sum, self.loss_count = 0.0, 0
        record: dict[str, Any] = {
            "epoch": self.epoch,
            "step": self.global_step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": float(sums[0] / sums[1]) if sums[1] > 0 else None,
        }
        checkpoint_now = self.epoch % cfg.val_every == 0 or self.epoch == cfg.epochs
        improved = False
        if checkpoint_now:
            if self.data.val is not None:
                self.last_metrics = self._validate()
                record.update(self.last_metrics)
            value = record.get(self.monitor)
            better = (lambda a, b: a < b) if self.monitor in _MINIMISE else (lambda a, b: a > b)
            improved = value is not None and (self.best_value is None or better(value, self.best_value))
            if improved:
                self.best_value, self.best_epoch = float(value), self.epoch
        record["best"] = improved
        record["time_s"] = round(seconds, 3)
        self.history.append(record)
        if ctx.is_main:
            if improved:
                self.model.save(
                    cfg.save_path / ck.BEST, training_config=cfg.to_jsonable(), metrics=self._bundle_metrics()
                )
            if checkpoint_now:
                self._save_last()
            for lg in self.loggers:
                lg.log_epoch(record, self.history)
            if checkpoint_now:
                self._emit("validate", metrics=self.last_metrics)

    @torch.no_grad()
    def _validate(self) -> dict[str, Any]:
        cfg, ctx = self.config, self.ctx
        net = self.model.torch_module
        net.eval()
        n = self.model.num_classes
        cm = torch.zeros((n, n), dtype=torch.int64, device=self.device)
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        batches = val_batches(self.data.val, cfg.batch_size, ctx.rank, ctx.world_size)
        loader = make_loader(self.data.val, batches, self.model.stride, cfg.num_workers, cfg.seed)
        for i, (x, y) in enumerate(loader):
            x, y = x.to(self.device), y.to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):  # CPU: float32
                logits = net(x).float()
            totals[0] += float(self.criterion(logits, y)) * x.shape[0]
            totals[1] += x.shape[0]
            cm += confusion_matrix(logits.argmax(dim=1), y, n)
            if ctx.is_main and i % cfg.val_log_freq == 0:
                self._log_panel(f"val/example_{i}", x, y, logits)
        net.train()
        all_sum(cm, ctx)
        all_sum(totals, ctx)
        metrics = compute_metrics(cm, self.data.class_map).to_dict()
        metrics["val_loss"] = float(totals[0] / totals[1]) if totals[1] > 0 else None
        return metrics

    # -- saving / restoring -----------------------------------------------------------------------
    def _bundle_metrics(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {
            **self.last_metrics,
            "train_loss": last.get("train_loss"),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "monitor": self.monitor,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
        }

    def _save_last(self) -> None:
        cfg = self.config
        last = cfg.save_path / ck.LAST
        self.model.save(last, training_config=cfg.to_jsonable(), metrics=self._bundle_metrics())
        ck.save_training_state(ck.state_path_for(last), ck.collect_state(self))

    # -- reporting --------------------------------------------------------------------------------
    def _emit(self, phase: str, metrics: dict[str, Any] | None = None, message: str = "") -> None:
        if self.on_progress is None or not self.ctx.is_main:
            return
        self.on_progress(
            Progress(
                epoch=min(self.epoch + 1, self.config.epochs) if phase != "validate" else self.epoch,
                step=self.global_step,
                total=self.total_steps,
                loss=self.last_loss,
                metrics=dict(metrics or {}),
                phase=phase,  # type: ignore[arg-type]
                message=message,
            )
        )

    def _log_panel(self, tag: str, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> None:
        if not any(lg.wants_images for lg in self.loggers):
            return
        panel = overlay_panel(
            x[0, 0].detach().float().cpu().numpy(),
            y[0].cpu().numpy(),
            logits[0].detach().argmax(dim=0).cpu().numpy(),
            self.data.class_map,
        )
        for lg in self.loggers:
            if lg.wants_images:
                lg.log_images(tag, panel, self.global_step)

    def _result(self, cancelled: bool) -> TrainingResult:
        best = self.config.save_path / ck.BEST
        last = self.config.save_path / ck.LAST
        return TrainingResult(
            save_path=self.config.save_path,
            best_path=best if self.best_epoch is not None and best.exists() else None,
            last_path=last if last.exists() else None,
            epochs_completed=self.epoch,
            global_step=self.global_step,
            total_steps=self.total_steps,
            monitor=self.monitor,
            best_value=self.best_value,
            best_epoch=self.best_epoch,
            metrics=dict(self.last_metrics),
            history=tuple(dict(r) for r in self.history),
            cancelled=cancelled,
        )


def train(config: TrainingConfig, **kwargs: Any) -> TrainingResult:
    """``Trainer(config, **kwargs).run()``; see :class:`Trainer` for the keyword arguments."""
    return Trainer(config, **kwargs).run()
