"""Where training numbers go: console and ``metrics.csv`` built in; TensorBoard and W&B when installed.

Loggers only ever run in the process that writes (rank 0 under DDP). TensorBoard and wandb are
imported when such a logger is built, never at module import, and a missing one is a clear error
before any training starts.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from napari_fibsem.core.io.atomic import atomic_write_text
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.training.config import TrainingConfig

Write = Callable[[str], None]
_log = logging.getLogger("napari_fibsem.training")

_FIRST_COLUMNS = ["epoch", "step", "lr", "train_loss", "val_loss", "pixel_accuracy", "mean_iou",
                  "mean_fg_iou", "mean_fg_dice", "best", "time_s"]  # fmt: skip


@runtime_checkable
class TrainingLogger(Protocol):
    """What the trainer calls; a logger ignores what it has no use for."""

    wants_images: bool

    def log_scalars(self, values: Mapping[str, float], step: int) -> None: ...

    def log_epoch(self, record: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> None: ...

    def log_images(self, tag: str, panel: np.ndarray, step: int) -> None: ...

    def close(self) -> None: ...


class _Base:
    wants_images = False

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        pass

    def log_epoch(self, record: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> None:
        pass

    def log_images(self, tag: str, panel: np.ndarray, step: int) -> None:
        pass

    def close(self) -> None:
        pass


class ConsoleLogger(_Base):
    """One line per epoch through ``write`` (``tqdm.write`` on the CLI, so bars stay intact)."""

    def __init__(self, write: Write | None = None, epochs: int | None = None) -> None:
        self.write = write or _log.info
        self.epochs = epochs

    def log_epoch(self, record: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> None:
        of = f"/{self.epochs}" if self.epochs else ""
        parts = [f"epoch {record['epoch']}{of}"]
        for key in ("train_loss", "val_loss", "mean_fg_iou", "mean_fg_dice", "pixel_accuracy"):
            if record.get(key) is not None:
                parts.append(f"{key} {record[key]:.4f}")
        parts.append(f"lr {record.get('lr', 0):.2e}")
        if record.get("time_s") is not None:
            parts.append(f"{record['time_s']:.1f}s")
        if record.get("best"):
            parts.append("(best)")
        self.write("  ".join(parts))


class CsvLogger(_Base):
    """``metrics.csv``: one row per epoch, rewritten atomically from the history (so a resumed run
    continues the same file without duplicate or missing rows)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def log_epoch(self, record: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> None:
        keys = list(dict.fromkeys(k for row in history for k in row))  # first-seen order: class-map order
        columns = [c for c in _FIRST_COLUMNS if c in keys] + [k for k in keys if k not in _FIRST_COLUMNS]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in history:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
        atomic_write_text(self.path, buf.getvalue())


class TensorBoardLogger(_Base):
    """Scalars and image/label/prediction panels for TensorBoard (``pip install tensorboard``)."""

    wants_images = True

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError(
                f"logger 'tensorboard' needs the tensorboard package ({e}); install it with "
                "`pip install tensorboard` or remove 'tensorboard' from logger"
            ) from e
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        for k, v in values.items():
            if v is not None:
                self.writer.add_scalar(k, v, step)

    def log_epoch(self, record: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> None:
        skip = {"epoch", "step", "best", "time_s"}
        for k, v in record.items():
            if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(f"epoch/{k}", v, record["step"])
        self.writer.flush()

    def log_images(self, tag: str, panel: np.ndarray, step: int) -> None:
        self.writer.add_image(tag, panel, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class WandbLogger(_Base):
    """Weights & Biases (``pip install wandb``); ``wandb_mode: offline`` works without network."""

    wants_images = True

    def __init__(self, config: TrainingConfig, run_dir: str | Path) -> None:
        try:
            import wandb
        except ImportError as e:
            raise ImportError(
                f"wandb logging was asked for (wandb: true) but wandb cannot be imported ({e}); "
                "install it with `pip install wandb` or set wandb: false"
            ) from e
        self.wandb = wandb
        self.run = wandb.init(
            project=config.wandb_project,
            entity=config.wandb_entity,
            config=config.to_jsonable(),
            notes=config.note,
            mode=config.wandb_mode,
            dir=str(run_dir),
        )

    def log_scalars(self, values: Mapping[str, float], step: int) -> None:
        self.run.log({k: v for k, v in values.items() if v is not None}, step=step)

    def log_epoch(self, record: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> None:
        values = {f"epoch/{k}": v for k, v in record.items() if isinstance(v, (int, float)) and v is not None}
        self.run.log(values, step=record["step"])

    def log_images(self, tag: str, panel: np.ndarray, step: int) -> None:
        self.run.log({tag: self.wandb.Image(panel, caption="image | label | prediction")}, step=step)

    def close(self) -> None:
        self.run.finish()


def build_loggers(config: TrainingConfig, write: Write | None = None) -> list[TrainingLogger]:
    """The loggers ``config.logger`` names (``wandb: true`` adds wandb), writing into ``save_path``."""
    loggers: list[TrainingLogger] = []
    try:
        for name in dict.fromkeys(config.logger):
            if name == "console":
                loggers.append(ConsoleLogger(write, config.epochs))
            elif name == "csv":
                loggers.append(CsvLogger(config.save_path / "metrics.csv"))
            elif name == "tensorboard":
                loggers.append(TensorBoardLogger(config.save_path / "tensorboard"))
            elif name == "wandb":
                loggers.append(WandbLogger(config, config.save_path))
    except BaseException:
        for lg in loggers:
            lg.close()
        raise
    return loggers


def overlay_panel(image: np.ndarray, target: np.ndarray, pred: np.ndarray, class_map: ClassMap) -> np.ndarray:
    """``H x 3W x 3`` uint8: the (normalised) image, its labels and the prediction in class colours."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = float(img.min()), float(img.max())
    gray = ((img - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(img)).astype(np.uint8)
    lut = np.zeros((256, 3), np.uint8)
    for cid in class_map.ids:
        lut[cid] = [round(c * 255) for c in class_map[cid].rgb()]
    t = np.where(target < 0, 0, target).astype(np.uint8)
    p = np.clip(pred, 0, 255).astype(np.uint8)
    return np.concatenate([np.repeat(gray[..., None], 3, axis=2), lut[t], lut[p]], axis=1)
